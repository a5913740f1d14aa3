"""Blocks of vectors for the uncertainty tools: user maps, reductions and R-orthonormal bases.

A *block* is an ``(n_local, m)`` float64 array: ``m`` vectors, of which this rank holds
``n_local`` rows (all of them in serial). The maps of :mod:`krylov_adjoint.uq` take and return
blocks; :func:`columnwise` turns a map of one vector into a map of blocks. Every inner product
of blocks is a small ``(m, m')`` matrix of local sums passed through ``reduce_sum``, so that
the same code runs in serial (identity) and under MPI (``comm.allreduce``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg

from ..errors import CallbackError, InputError, KrylovAdjointError, NonFiniteError

BlockMap = Callable[[np.ndarray], np.ndarray]
Reduce = Callable[[np.ndarray], np.ndarray]

__all__ = ["columnwise", "BlockMap", "Reduce"]


def columnwise(apply: Callable[[np.ndarray], Any]) -> BlockMap:
    """A map of blocks that applies a map of single vectors to each column in turn.

    Use it for a callback that takes one vector, e.g. a Gauss–Newton Hessian–vector product
    ``lambda v: solver.gauss_newton_vector_product(theta, v).product``; a callback that takes
    a whole block (a matrix product, a batched solve) is passed as it is.

    Parameters
    ----------
    apply : callable
        ``apply(v)`` with ``v`` of shape ``(n_local,)``, returning the same shape.

    Returns
    -------
    callable
        ``f(block)`` with ``block`` of shape ``(n_local, m)``, returning ``(n_local, m)``.

    Examples
    --------
    >>> import numpy as np
    >>> f = columnwise(lambda v: 2.0 * v)
    >>> f(np.eye(2))
    array([[2., 0.],
           [0., 2.]])
    """
    if not callable(apply):
        raise InputError("apply", f"expected a callable, got {type(apply).__name__}")

    def block_apply(block: np.ndarray) -> np.ndarray:
        columns = [np.asarray(apply(block[:, j]), dtype=np.float64).reshape(-1)
                   for j in range(block.shape[1])]
        if not columns:
            return np.zeros_like(block)
        return np.stack(columns, axis=1)

    block_apply.__name__ = f"columnwise({getattr(apply, '__name__', 'apply')})"
    return block_apply


class CountedMap:
    """A user's block map, called with read-only blocks, its output checked and counted.

    ``count`` is the number of vectors the map has been applied to (the columns of all the
    blocks), ``calls`` the number of calls.
    """

    def __init__(self, apply: Any, name: str) -> None:
        if not callable(apply):
            raise InputError(name, f"expected a callable taking an (n_local, m) block, got "
                             f"{type(apply).__name__}")
        self.apply, self.name = apply, name
        self.count = self.calls = 0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float64)
        view = block.view()
        view.flags.writeable = False
        try:
            out = self.apply(view)
        except KrylovAdjointError:
            raise
        except Exception as exc:
            raise CallbackError(self.name, f"raised {type(exc).__name__}: {exc} (it is called "
                                f"with a block of shape {block.shape}; wrap a map of single "
                                "vectors in krylov_adjoint.uq.columnwise)") from exc
        self.calls += 1
        self.count += block.shape[1]
        return checked_block(out, self.name, block.shape)


def checked_block(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``, or a :class:`CallbackError`."""
    if value is None:
        raise CallbackError(name, f"returned None, expected an array of shape {shape}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise CallbackError(name, f"expected real float64 values, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise CallbackError(name, f"expected shape {shape}, got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise NonFiniteError(name, "returned NaN or Inf")
    return arr


def as_reduce(reduce_sum: Reduce | None) -> Reduce:
    """A checked ``reduce_sum``: the identity when None, else the user's, shape checked."""
    if reduce_sum is None:
        return lambda local: local
    if not callable(reduce_sum):
        raise InputError("reduce_sum", f"expected a callable, got {type(reduce_sum).__name__}")

    def reduce(local: np.ndarray) -> np.ndarray:
        try:
            out = reduce_sum(np.ascontiguousarray(local, dtype=np.float64))
        except KrylovAdjointError:
            raise
        except Exception as exc:
            raise CallbackError("reduce_sum", f"raised {type(exc).__name__}: {exc}") from exc
        return checked_block(out, "reduce_sum", local.shape)

    return reduce


def gram(reduce: Reduce, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The global ``Xᵀ Y`` of two blocks split by rows over the ranks."""
    return reduce(X.T @ Y)


def column_norms(reduce: Reduce, X: np.ndarray) -> np.ndarray:
    """The global 2-norms of the columns of a block."""
    return np.sqrt(np.maximum(reduce(np.sum(X * X, axis=0)[None, :])[0], 0.0))


def r_orthonormalise(reduce: Reduce, Y: np.ndarray, RY: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, RQ)`` with ``range(Q) ⊆ range(Y)`` and ``Qᵀ R Q = I``, dropping dependent columns.

    First SVQB (Stathopoulos & Wu, SIAM J. Sci. Comput. 23(6), 2002) in the R inner product:
    with ``G = Yᵀ R Y`` scaled to a unit diagonal, ``G = W Λ Wᵀ`` and ``Q = Y W Λ^{-1/2}``
    keeping the ``λ > 10·m·ε·max λ`` (m columns; below, λ is rounding error of G and its
    direction noise; above, the next Gram matrix is within about ``1/(10m)`` of I, so its
    Cholesky factor exists), each column of W signed so that its largest entry is positive. Then
    one Cholesky QR pass, ``Qᵀ R Q = L Lᵀ``, ``Q ← Q L⁻ᵀ``, restores ``Qᵀ R Q = I`` to
    rounding; being unique, it does not rotate Q (an eigensolver would, arbitrarily, on a
    Gram matrix that is already near I), so every rank and a serial run get the same Q.
    ``RQ`` follows by the same combinations: R is applied once, to ``Y``. Only the small
    Gram matrices are reduced, so every rank takes the same decisions.
    """
    G = _symmetric(gram(reduce, Y, RY))
    scale = np.sqrt(np.maximum(np.diag(G), 0.0))
    scale[scale == 0] = 1.0
    lam, W = np.linalg.eigh(G / np.outer(scale, scale))
    largest = float(lam[-1]) if lam.size else 0.0
    keep = lam > 10 * lam.size * np.finfo(np.float64).eps * largest
    if largest <= 0:
        keep[:] = False
    C = (signed(W[:, keep]) / np.sqrt(lam[keep])) / scale[:, None]
    Q, RQ = Y @ C, RY @ C
    L = np.linalg.cholesky(_symmetric(gram(reduce, Q, RQ)))
    Q = scipy.linalg.solve_triangular(L, Q.T, lower=True).T
    RQ = scipy.linalg.solve_triangular(L, RQ.T, lower=True).T
    return Q, RQ


def _symmetric(G: np.ndarray) -> np.ndarray:
    return 0.5 * (G + G.T)


def signed(U: np.ndarray) -> np.ndarray:
    """The columns of U, each signed so that its largest entry (in modulus) is positive: a
    choice every rank makes alike from the same small matrix."""
    if not U.size:
        return U
    largest = U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])]
    return U * np.where(largest < 0, -1.0, 1.0)

"""Dominant eigenpairs of the prior-preconditioned Gauss–Newton Hessian, by randomisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import as_size
from ..errors import InputError
from ..verify._random import RandomLike, as_generator
from ._blocks import (
    BlockMap,
    CountedMap,
    Reduce,
    as_reduce,
    column_norms,
    gram,
    r_orthonormalise,
    signed,
)

__all__ = ["RandomizedEighResult", "randomized_eigh"]


@dataclass(frozen=True)
class RandomizedEighResult:
    """The k dominant pairs of ``H v = μ R v`` found by :func:`randomized_eigh`.

    Attributes
    ----------
    eigenvalues : ndarray, shape (k,)
        ``μ₁ ≥ μ₂ ≥ … ≥ μ_k`` (read-only).
    eigenvectors : ndarray, shape (n_local, k)
        This rank's rows of ``V``, R-orthonormal: ``Vᵀ R V = I`` (read-only).
    residuals : ndarray, shape (k,)
        ``‖H vᵢ − μᵢ R vᵢ‖ / (|μᵢ| ‖R vᵢ‖)`` (global 2-norms): how well the random subspace
        holds each pair. Computed from the products of the second pass, at no extra cost.
    n_apply_H, n_apply_R, n_solve_R : int
        Vectors the three maps were applied to (``2 × basis_size`` for H: two passes).
    basis_size : int
        Columns of the R-orthonormal basis, ``min(k + oversampling, n)`` less any dependent
        directions dropped (H of low rank).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    n_apply_H: int  # noqa: N815 (H and R are the maths' names)
    n_apply_R: int  # noqa: N815
    n_solve_R: int  # noqa: N815
    basis_size: int

    @property
    def k(self) -> int:
        """The number of pairs."""
        return int(self.eigenvalues.size)

    @property
    def max_residual(self) -> float:
        """The largest relative residual of the pairs (0 when there is none)."""
        return float(self.residuals.max()) if self.residuals.size else 0.0


def randomized_eigh(apply_H: BlockMap, apply_R: BlockMap, solve_R: BlockMap,  # noqa: N803
                    k: int, *,
                    n_local: int | None = None, oversampling: int = 10, rng: RandomLike = None,
                    omega: np.ndarray | None = None, reduce_sum: Reduce | None = None
                    ) -> RandomizedEighResult:
    """The k dominant eigenpairs of ``H v = μ R v`` with ``Vᵀ R V = I``, by a double pass.

    H is the Gauss–Newton Hessian of the data misfit (symmetric positive semi-definite), R
    the prior precision (the Hessian of the regularisation, symmetric positive definite): μ
    are the eigenvalues of the prior-preconditioned Hessian ``R^{-1/2} H R^{-1/2}``, and
    ``μ > 1`` marks the directions the data inform more than the prior does.

    The double-pass randomized algorithm of Halko, Martinsson & Tropp (SIAM Rev. 53(2),
    2011, Alg. 5.3) in the R inner product, as in Bui-Thanh, Ghattas, Martin & Stadler (SIAM
    J. Sci. Comput. 35(6), 2013, §5) and hIPPYlib's ``doublePassG``:

    1. ``Ω`` Gaussian, ``n × ℓ`` with ``ℓ = min(k + oversampling, n)``;
    2. ``Y = R⁻¹ H Ω`` (first pass: ℓ products with H, ℓ solves with R);
    3. ``Q`` an R-orthonormal basis of ``range(Y)``: ``Qᵀ R Q = I`` (ℓ products with R, then
       two SVQB passes on the reduced Gram matrix ``Yᵀ R Y``; dependent columns are dropped);
    4. ``T = Qᵀ H Q`` (second pass: ℓ products with H), ``T = U diag(μ) Uᵀ``;
    5. ``V = Q U``, the k largest μ (each column of U signed so that its largest entry is
       positive, the same on every rank).

    Since ``H Q U = R Q U diag(μ)`` holds exactly when ``range(Q)`` holds the pairs, the
    residuals ``‖H vᵢ − μᵢ R vᵢ‖`` are reported from ``H Q`` and ``R Q`` without more products.

    Parameters
    ----------
    apply_H, apply_R, solve_R : callable
        ``f(block)``: H, R and R⁻¹ applied to each column of an ``(n_local, m)`` block,
        returning ``(n_local, m)``. Blocks let a backend batch the products (a matrix product,
        one solve with many right-hand sides); wrap a map of single vectors in
        :func:`columnwise`. Under MPI each is collective and takes this rank's rows.
    k : int
        Number of eigenpairs (at most n; fewer are returned when the rank of H is smaller).
    n_local : int, optional
        Rows held by this rank; needed only when ``omega`` is not given.
    oversampling : int
        Extra random directions (p); the error of the k-th pair falls like the ratio of the
        ``(k+p)``-th to the k-th eigenvalue. 10 is the usual choice.
    rng : None, int or numpy Generator
        Draws Ω: None fresh entropy, an int a reproducible stream (as in
        :mod:`krylov_adjoint.verify`). Under MPI give each rank its own stream, e.g.
        ``np.random.default_rng([seed, comm.rank])``.
    omega : ndarray, shape (n_local, ℓ), optional
        This rank's rows of Ω itself, instead of drawing it (then ``rng`` is unused).
    reduce_sum : callable, optional
        ``reduce_sum(local) -> global``: the sum over the ranks of a small matrix of local
        inner products (``lambda a: comm.allreduce(a)`` with mpi4py). The identity by default.

    Returns
    -------
    RandomizedEighResult

    Examples
    --------
    >>> import numpy as np
    >>> H = np.diag([100.0, 10.0, 1.0, 0.1, 0.0])
    >>> R = 2.0 * np.eye(5)
    >>> result = randomized_eigh(lambda X: H @ X, lambda X: R @ X, lambda X: X / 2.0, 2,
    ...                          n_local=5, rng=0)
    >>> result.eigenvalues
    array([50.,  5.])
    >>> bool(np.allclose(result.eigenvectors.T @ R @ result.eigenvectors, np.eye(2)))
    True

    Ω has ``min(2 + 10, 5) = 5`` columns; H has rank 4, so the basis keeps 4 directions and
    the second pass applies H to those only:

    >>> result.basis_size, result.n_apply_H
    (4, 9)
    """
    k = as_size(k, "k", minimum=1)
    oversampling = as_size(oversampling, "oversampling")
    reduce = as_reduce(reduce_sum)
    H, R, Rinv = (CountedMap(apply_H, "apply_H"), CountedMap(apply_R, "apply_R"),
                  CountedMap(solve_R, "solve_R"))
    if omega is None:
        if n_local is None:
            raise InputError("n_local", "give the number of rows this rank holds (or omega)")
        n_local = as_size(n_local, "n_local")
    else:
        omega = _as_block(omega, "omega", n_local)
        n_local = omega.shape[0]
    n = int(round(float(reduce(np.array([[float(n_local)]]))[0, 0])))
    if k > n:
        raise InputError("k", f"asks for {k} eigenpairs of a problem of size {n}")
    ell = min(k + oversampling, n)
    if omega is None:
        omega = as_generator(rng).standard_normal((n_local, ell))
    elif omega.shape[1] < k:
        raise InputError("omega", f"has {omega.shape[1]} columns, fewer than k = {k}")

    Y = Rinv(H(omega))
    Q, RQ = r_orthonormalise(reduce, Y, R(Y))
    HQ = H(Q)
    T = gram(reduce, Q, HQ)
    mu, U = np.linalg.eigh(0.5 * (T + T.T))
    order = np.argsort(mu)[::-1][:k]
    mu, U = mu[order], U[:, order]
    U = signed(U)
    V = Q @ U
    RV = RQ @ U
    residual = column_norms(reduce, HQ @ U - RV * mu)
    scale = np.abs(mu) * column_norms(reduce, RV)
    with np.errstate(divide="ignore", invalid="ignore"):
        residuals = np.where(scale > 0, residual / np.where(scale > 0, scale, 1.0), np.inf)
    for array in (mu, V, residuals):
        array.flags.writeable = False
    return RandomizedEighResult(eigenvalues=mu, eigenvectors=V, residuals=residuals,
                                n_apply_H=H.count, n_apply_R=R.count, n_solve_R=Rinv.count,
                                basis_size=int(Q.shape[1]))


def _as_block(value: Any, name: str, n_local: int | None) -> np.ndarray:
    """A finite float64 2-D array with ``n_local`` rows (any when None), or an InputError."""
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.ndim != 2 or (n_local is not None and arr.shape[0] != n_local):
        rows = "n_local" if n_local is None else str(n_local)
        raise InputError(name, f"expected shape ({rows}, m), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(name, "contains NaN or Inf")
    return arr

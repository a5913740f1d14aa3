"""Operators given by the values of an assembled sparse matrix on a fixed pattern."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import as_size, real_array, refuse_complex
from ..errors import CallbackError, InputError, MissingCallbackError
from ..problem.operator import ParametricOperator
from ..problem.structure import Structure
from ._matrices import as_sparse
from ._user_layout import UserLayout
from .pattern import SparsityPattern

__all__ = ["AssembledOperator", "from_assembly"]

Values = Callable[[np.ndarray], np.ndarray]
ValuesVJP = Callable[[np.ndarray, np.ndarray], np.ndarray]
ValuesJVP = Callable[[np.ndarray, np.ndarray], np.ndarray]
ValuesVJPJVP = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

#: Relative tolerance of the symmetry check of declared-symmetric operators.
SYMMETRY_RTOL = 1e-12


class AssembledOperator(ParametricOperator):
    """``A(θ)`` known by its values on a fixed sparsity pattern, and their VJP (and JVP).

    Products with ``A(θ)`` and ``A(θ)ᵀ`` use the assembled CSR matrix, assembled once per θ
    (the last θ is cached, keyed on its bytes; the transpose is formed on first use by one
    gather). The operator VJP is the value VJP applied to ``λ_i x_j`` on the pattern:

        vjp(θ, x, λ) = λᵀ (∂A/∂θ) x = values_vjp(θ, pattern.cotangent(λ, x)),

    the term the gradient engine *subtracts* (``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ)x + λᵀ∂b/∂θ``).

    Parameters
    ----------
    pattern : SparsityPattern
        The fixed positions of the stored entries.
    values : callable ``theta -> ndarray (nnz,)``
        The values of A(θ) in the pattern's (canonical CSR) order.
    values_vjp : callable ``(theta, values_bar) -> ndarray (P,)``
        ``Σ_k values_bar[k] ∂values[k]/∂θ``.
    values_jvp : callable ``(theta, dtheta) -> ndarray (nnz,)``, optional
        ``(∂values/∂θ) dθ``; enables forward mode.
    structure : {"general", "symmetric", "spd"}
    n_params : int, optional
        P, when known (reported, not enforced).
    vjp : callable ``(theta, x, lam) -> ndarray (P,)``, optional
        A faster operator VJP replacing the generic one (same result).
    values_vjp_jvp : callable ``(theta, values_bar, dtheta) -> ndarray (P,)``, optional
        The derivative of ``values_vjp`` in θ along dθ at fixed ``values_bar``; gives the
        operator's ``vjp_jvp`` (on the same cotangent ``λ_i x_j``), for Hessian-vector
        products. The operator's ``jvp_transpose`` needs only ``values_jvp``: the values of
        ∂A/∂θ·dθ on the transposed pattern.
    vjp_jvp : callable ``(theta, x, lam, dtheta) -> ndarray (P,)``, optional
        A faster operator ``vjp_jvp`` replacing the generic one (same result).

    Examples
    --------
    ``A(θ) = diag(θ)`` from its values:

    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> pattern = SparsityPattern.from_matrix(sp.identity(3))
    >>> op = AssembledOperator(pattern, lambda th: np.array(th, dtype=float),
    ...                        lambda th, vbar: vbar, values_jvp=lambda th, dth: dth,
    ...                        structure="spd")
    >>> theta, x, lam = np.array([1.0, 2.0, 3.0]), np.ones(3), np.array([1.0, 0.0, 2.0])
    >>> op.matvec(theta, x)
    array([1., 2., 3.])
    >>> op.vjp(theta, x, lam)                 # λ_i x_i
    array([1., 0., 2.])
    >>> op.jvp_transpose(theta, lam, np.array([1.0, 1.0, 2.0]))
    array([1., 0., 4.])
    """

    #: True when the ``values`` callback returns a new array at each call (kept without copy).
    _fresh_values = False

    def __init__(self, pattern: SparsityPattern, values: Values, values_vjp: ValuesVJP, *,
                 values_jvp: ValuesJVP | None = None, structure: str | Structure = "general",
                 n_params: int | None = None,
                 vjp: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
                 values_vjp_jvp: ValuesVJPJVP | None = None,
                 vjp_jvp: Callable[..., np.ndarray] | None = None) -> None:
        if not isinstance(pattern, SparsityPattern):
            raise TypeError(f"pattern must be a SparsityPattern, got {type(pattern).__name__}")
        for label, fn in (("values", values), ("values_vjp", values_vjp),
                          ("values_jvp", values_jvp), ("vjp", vjp),
                          ("values_vjp_jvp", values_vjp_jvp), ("vjp_jvp", vjp_jvp)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
        structure = Structure.coerce(structure)
        self.pattern = pattern
        self.n_params = None if n_params is None else as_size(n_params, "n_params")
        self.assembly_count = 0
        self._values_fn = values
        self._values_vjp_fn = values_vjp
        self._values_jvp_fn = values_jvp
        self._values_vjp_jvp_fn = values_vjp_jvp
        self._key: bytes | None = None
        self._A: sp.csr_matrix | None = None
        self._AT: sp.csr_matrix | None = None
        super().__init__(
            self._apply, n=pattern.n,
            rmatvec=None if structure.is_symmetric else self._apply_transpose,
            vjp=self._pattern_vjp if vjp is None else vjp,
            jvp=None if values_jvp is None else self._apply_tangent,
            structure=structure, assemble=self.matrix,
            vjp_jvp=vjp_jvp if vjp_jvp is not None else (
                None if values_vjp_jvp is None else self._pattern_vjp_jvp),
            jvp_transpose=None if values_jvp is None else self._apply_tangent_transpose)

    # -- the matrix at θ ------------------------------------------------------------
    def values(self, theta: Any) -> np.ndarray:
        """The values of A(θ) on the pattern (a copy of the cached ones)."""
        return self.matrix(theta).data.copy()

    def matrix(self, theta: Any) -> sp.csr_matrix:
        """A(θ) as CSR float64, assembled once per θ (do not modify it in place)."""
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        key = theta.tobytes()
        if key != self._key or self._A is None:
            values = self._checked_values(theta)
            self._A, self._AT, self._key = self.pattern.matrix(values), None, key
            self.assembly_count += 1
        return self._A

    def transposed_matrix(self, theta: Any) -> sp.csr_matrix:
        """A(θ)ᵀ as CSR, formed from the cached A(θ) on first use."""
        A = self.matrix(theta)
        if self.structure.is_symmetric:
            return A
        if self._AT is None:
            self._AT = self.pattern.transpose(A.data)
        return self._AT

    def linear_operator(self, theta: Any) -> spla.LinearOperator:
        """A(θ) as a scipy ``LinearOperator`` (``matvec`` and ``rmatvec``)."""
        theta = np.array(theta, dtype=np.float64, copy=True)
        return spla.LinearOperator(self.shape, matvec=lambda x: self._apply(theta, x),
                                   rmatvec=lambda y: self._apply_transpose(theta, y),
                                   dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, N)``."""
        return self.pattern.shape

    # -- derivatives of the values -------------------------------------------------------
    def values_vjp(self, theta: Any, values_bar: Any) -> np.ndarray:
        """``Σ_k values_bar[k] ∂values[k]/∂θ``, shape (P,)."""
        theta = np.asarray(theta, dtype=np.float64)
        out = self._values_vjp_fn(theta, values_bar)
        refuse_complex(out, "values_vjp", callback=True)
        return np.asarray(out, dtype=np.float64)

    def values_jvp(self, theta: Any, dtheta: Any) -> np.ndarray:
        """``(∂values/∂θ) dθ``, shape (nnz,)."""
        if self._values_jvp_fn is None:
            raise MissingCallbackError("this operator has no values_jvp: forward mode is "
                                       "unavailable")
        theta = np.asarray(theta, dtype=np.float64)
        out = self._values_jvp_fn(theta, np.asarray(dtheta, dtype=np.float64))
        refuse_complex(out, "values_jvp", callback=True)
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (self.pattern.nnz,):
            raise CallbackError("values_jvp", f"expected shape ({self.pattern.nnz},), got "
                                f"{out.shape}")
        return out

    # -- callbacks handed to ParametricOperator -------------------------------------------
    def _apply(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.matrix(theta) @ x

    def _apply_transpose(self, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.transposed_matrix(theta) @ y

    def _pattern_vjp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return self.values_vjp(theta, self.pattern.cotangent(lam, x))

    def _apply_tangent(self, theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray
                       ) -> np.ndarray:
        return self.pattern.matrix(self.values_jvp(theta, dtheta)) @ x

    def _apply_tangent_transpose(self, theta: np.ndarray, y: np.ndarray, dtheta: np.ndarray
                                 ) -> np.ndarray:
        return self.pattern.matrix(self.values_jvp(theta, dtheta)).T @ y

    def _pattern_vjp_jvp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                         dtheta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        out = self._values_vjp_jvp_fn(  # type: ignore[misc]
            theta, self.pattern.cotangent(lam, x), np.asarray(dtheta, dtype=np.float64))
        refuse_complex(out, "values_vjp_jvp", callback=True)
        return np.asarray(out, dtype=np.float64)

    def _checked_values(self, theta: np.ndarray) -> np.ndarray:
        values = np.asarray(self._values_fn(theta))
        if values.shape != (self.pattern.nnz,):
            raise CallbackError("values", f"expected shape ({self.pattern.nnz},), got "
                                f"{values.shape}")
        if values.dtype.kind not in "biuf":
            raise CallbackError("values", f"expected real values, got dtype {values.dtype}")
        if self._fresh_values and values.dtype == np.float64:
            return values
        return np.array(values, dtype=np.float64, copy=True)


def from_assembly(assemble: Callable[[np.ndarray], Any],
                  assembly_vjp: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  theta0: Any, *, structure: str | Structure = "general",
                  assembly_jvp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                  assembly_vjp_jvp: ValuesVJPJVP | None = None) -> AssembledOperator:
    """An operator from a simulator's own assembly ``θ ↦ A(θ)`` and that assembly's VJP.

    The library forms the cotangent of the matrix values, ``λ_i x_j`` at each stored entry
    (i, j) (vectorised, never dense), and calls ``assembly_vjp`` on it, which gives

        vjp(θ, x, λ) = λᵀ (∂A/∂θ) x = Σ_(i,j) λ_i x_j ∂A_ij/∂θ.

    Write ``assembly_vjp`` as the plain VJP of your assembly, ``values_bar ↦ Σ_k
    values_bar[k] ∂A.data[k]/∂θ``, with no minus sign: the gradient engine subtracts this term.

    Parameters
    ----------
    assemble : callable ``theta -> A(theta)``
        Returns a CSR, CSC or COO matrix, a 2-D array or a serial petsc4py ``Mat`` with the
        same format and the same stored positions at every θ (explicit zeros are fine;
        dropping entries that happen to vanish is not). The first call, at ``theta0``, records
        the pattern; each later call is checked against it (an O(nnz) comparison).
    assembly_vjp : callable ``(theta, values_bar) -> ndarray (P,)``
        ``values_bar`` is aligned with ``A.data`` (for a 2-D array: has A's shape; for a PETSc
        ``Mat``: the values of ``getValuesCSR()``). Duplicate COO entries each receive the
        cotangent of their position.
    theta0 : array of shape (P,)
        A parameter at which to assemble once, to learn N, P and the pattern. The matrix is
        kept, so a first gradient at ``theta0`` does not assemble again.
    structure : {"general", "symmetric", "spd"}
        Declared for every θ. A declared symmetry is checked on ``A(theta0)``.
    assembly_jvp : callable ``(theta, dtheta) -> ndarray``, optional
        ``(∂A.data/∂θ) dθ`` aligned like ``values_bar``; enables forward mode, and gives the
        operator's ``jvp_transpose`` (those values on the transposed pattern).
    assembly_vjp_jvp : callable ``(theta, values_bar, dtheta) -> ndarray (P,)``, optional
        The derivative of ``assembly_vjp`` in θ along dθ at fixed ``values_bar`` (aligned
        like it), i.e. ``Σ_k values_bar[k] ∂²A.data[k]/∂θ² dθ``; with ``assembly_jvp`` it
        enables Hessian-vector products (zero for an assembly affine in θ).

    Returns
    -------
    AssembledOperator
        ``assembly_count`` counts the calls of ``assemble``.

    Raises
    ------
    CallbackError
        When a later assembly changes the format or the stored positions (the message names
        the first row or entry that differs).

    Examples
    --------
    A 1-D conductance matrix ``A(θ) = Σ_e θ_e a_e a_eᵀ + I`` with its assembly VJP:

    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> D = sp.diags([-1.0, 1.0], [0, 1], shape=(3, 4), format="csr")  # edge e: a_e = D[e]
    >>> def assemble(theta):
    ...     return (D.T @ sp.diags(theta) @ D + sp.identity(4)).tocsr()
    >>> def assembly_vjp(theta, values_bar):    # Σ_ij bar_ij ∂A_ij/∂θ_e = a_eᵀ bar a_e
    ...     bar = sp.csr_matrix((values_bar, A0.indices, A0.indptr), shape=(4, 4))
    ...     return np.asarray((D @ bar).multiply(D).sum(axis=1)).ravel()
    >>> theta0 = np.array([1.0, 2.0, 3.0])
    >>> A0 = assemble(theta0)
    >>> op = from_assembly(assemble, assembly_vjp, theta0, structure="spd")
    >>> x, lam = np.arange(4.0), np.ones(4)
    >>> op.vjp(theta0, x, lam)                 # (a_eᵀλ)(a_eᵀx) = 0 since a_eᵀλ = 0
    array([0., 0., 0.])
    >>> op.vjp(theta0, x, x)                   # (x_{e+1} − x_e)²
    array([1., 1., 1.])
    >>> op.assembly_count
    1
    """
    if not callable(assemble) or not callable(assembly_vjp):
        raise TypeError("assemble and assembly_vjp must be callable")
    for label, fn in (("assembly_jvp", assembly_jvp), ("assembly_vjp_jvp", assembly_vjp_jvp)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    theta0 = real_array(theta0, "theta0")
    if theta0.ndim != 1:
        raise ValueError(f"theta0 must be a 1-D array, got shape {theta0.shape}")
    first = _assembled(assemble, theta0)
    if first.shape[0] != first.shape[1]:
        raise CallbackError("assemble", f"A(θ) must be square, got shape {first.shape}")
    layout = UserLayout(first)
    pending = {"theta": theta0.tobytes(), "matrix": first}

    def values(theta: np.ndarray) -> np.ndarray:
        A = pending.pop("matrix", None) if theta.tobytes() == pending.get("theta") else None
        pending.clear()
        if A is None:
            A = _assembled(assemble, theta)
            layout.check(A, "assemble")
        return layout.to_values(np.asarray(layout.data(A), dtype=np.float64))

    def values_vjp(theta: np.ndarray, values_bar: np.ndarray) -> np.ndarray:
        return assembly_vjp(theta, layout.to_entries(values_bar))

    def values_jvp(theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        data = assembly_jvp(theta, dtheta)  # type: ignore[misc]
        refuse_complex(data, "assembly_jvp", callback=True)
        return layout.to_values(np.asarray(data, dtype=np.float64).ravel())

    def values_vjp_jvp(theta: np.ndarray, values_bar: np.ndarray,
                       dtheta: np.ndarray) -> np.ndarray:
        return assembly_vjp_jvp(theta, layout.to_entries(values_bar), dtheta)  # type: ignore[misc]

    op = AssembledOperator(layout.pattern, values, values_vjp,
                           values_jvp=None if assembly_jvp is None else values_jvp,
                           structure=structure, n_params=theta0.size,
                           values_vjp_jvp=None if assembly_vjp_jvp is None else values_vjp_jvp)
    A0 = op.matrix(theta0)
    if op.structure.is_symmetric:
        check_symmetric(layout.pattern, A0.data, "assemble")
    return op


def check_symmetric(pattern: SparsityPattern, values: np.ndarray, name: str) -> None:
    """Raise when values declared symmetric are not (relative tolerance ``SYMMETRY_RTOL``)."""
    if not pattern.is_structurally_symmetric:
        raise ValueError(f"{name}: declared symmetric, but the sparsity pattern is not "
                         "structurally symmetric (some (i, j) is stored without (j, i))")
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    defect = pattern.symmetry_defect(values)
    if defect > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name}: declared symmetric, but max |A − Aᵀ| = {defect:.3e} "
                         f"(max |A| = {scale:.3e}); declare structure='general'")


def _assembled(assemble: Callable[[np.ndarray], Any], theta: np.ndarray) -> Any:
    try:
        A = assemble(theta)
    except Exception as exc:
        raise CallbackError("assemble", f"raised {type(exc).__name__}: {exc}") from exc
    try:
        return as_sparse(A, "assemble", aligned=True)
    except InputError as exc:
        raise CallbackError("assemble", exc.detail) from exc
    except (TypeError, ValueError) as exc:
        raise CallbackError("assemble", str(exc)) from exc

"""A declared nullspace of A(θ) and of A(θ)ᵀ: singular systems solved in the least-squares sense.

For a singular A(θ) with ``A Z = 0`` and ``Wᵀ A = 0`` (Z and W of full column rank k), the
library solves for the minimum-norm solution ``x = A⁺ b``: the right-hand side is checked
against the nullspace of Aᵀ (or projected onto its complement), the Krylov iterations and the
solution are kept orthogonal to the nullspace of A, and the adjoint solve ``Aᵀ λ = ∂J/∂x`` is
solved for ``λ = A⁺ᵀ ∂J/∂x`` alike (its right-hand side projected: the component of ∂J/∂x
along Z does not change J, since x is held orthogonal to Z). docs/method.md derives the
gradient, with the terms a θ-dependent nullspace adds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CallbackError, InputError

__all__ = ["Nullspace", "NullspaceBasis", "RHS_POLICIES"]

#: What :class:`Nullspace` does with a right-hand side b that has a component along the
#: nullspace of Aᵀ: ``"check"`` refuses it beyond ``consistency_rtol`` (then projects the
#: round-off away), ``"project"`` removes it (x is then the least-squares solution A⁺b).
RHS_POLICIES = ("check", "project")

Basis = Any  # array (N,) or (N, k), or a callable θ -> such an array


class Nullspace:
    """The declared nullspace of a singular A(θ) (and of A(θ)ᵀ), for every θ.

    Parameters
    ----------
    basis : array of shape (N,) or (N, k), or callable ``theta -> array``
        Vectors spanning the nullspace of A(θ) (any basis: it is orthonormalised); a callable
        for a nullspace that depends on θ. On the PETSc backend, this rank's rows.
    transpose : array or callable, optional
        Vectors spanning the nullspace of A(θ)ᵀ. Default: ``basis`` (right for a symmetric
        A; for a nonsymmetric one, e.g. convection with Neumann conditions, give it).
    rhs : {"check", "project"}
        ``"check"`` (default): a right-hand side b with a component along the nullspace of
        Aᵀ larger than ``consistency_rtol·‖b‖`` is refused (a :class:`CallbackError` naming
        ``rhs`` and giving the ratio); ``"project"``: that component is removed and x is the
        least-squares solution ``A⁺ b`` (say so when the data are known to be inconsistent,
        e.g. a pure-Neumann problem whose sources do not sum to zero).
    consistency_rtol : float
        The tolerance of ``"check"``.
    null_rtol : float
        The declared vectors are checked at every new θ, by one product each:
        ``‖A z‖ ≤ null_rtol·‖A‖·‖z‖`` (‖A‖ estimated by a random product), else a
        :class:`CallbackError` naming ``operator.nullspace``.

    Examples
    --------
    The 1-D Neumann Laplacian has the constants as its nullspace:

    >>> import numpy as np
    >>> ns = Nullspace(np.ones(4))
    >>> basis = ns.at(np.zeros(1), 4)
    >>> basis.Z.ravel()
    array([0.5, 0.5, 0.5, 0.5])
    >>> basis.remove(np.array([1.0, 2.0, 3.0, 6.0]), transpose=False)
    array([-2., -1.,  0.,  3.])
    """

    def __init__(self, basis: Basis, *, transpose: Basis | None = None, rhs: str = "check",
                 consistency_rtol: float = 1e-8, null_rtol: float = 1e-8) -> None:
        if rhs not in RHS_POLICIES:
            raise InputError("rhs", f"expected one of {RHS_POLICIES}, got {rhs!r}")
        for name, tol in (("consistency_rtol", consistency_rtol), ("null_rtol", null_rtol)):
            if not (isinstance(tol, int | float) and 0.0 < float(tol) < 1.0):
                raise InputError(name, f"expected a float in (0, 1), got {tol!r}")
        self._basis = basis if callable(basis) else _as_columns(basis, "nullspace", None)
        self._transpose = (None if transpose is None else transpose if callable(transpose)
                           else _as_columns(transpose, "nullspace transpose", None))
        self.rhs = rhs
        self.consistency_rtol = float(consistency_rtol)
        self.null_rtol = float(null_rtol)
        self._constant: NullspaceBasis | None = None

    @property
    def depends_on_theta(self) -> bool:
        """True when the nullspace (of A or of Aᵀ) is given as a function of θ."""
        return callable(self._basis) or callable(self._transpose)

    @property
    def symmetric(self) -> bool:
        """True when the nullspace of Aᵀ is that of A (``transpose`` not given)."""
        return self._transpose is None

    def columns(self, theta: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The declared vectors at θ, checked, as (N, k) arrays (not orthonormalised); the
        second is None when the nullspace of Aᵀ is that of A."""
        Z = _evaluate(self._basis, theta, n, "operator.nullspace")
        W = (None if self._transpose is None
             else _evaluate(self._transpose, theta, n, "operator.nullspace (transpose)"))
        if W is not None and W.shape[1] != Z.shape[1]:
            raise CallbackError("operator.nullspace (transpose)",
                                f"spans {W.shape[1]} vector(s), but the nullspace of A spans "
                                f"{Z.shape[1]}: A and Aᵀ have nullspaces of the same dimension")
        return Z, W

    def at(self, theta: np.ndarray, n: int) -> NullspaceBasis:
        """The orthonormal bases at θ (computed once when the nullspace is constant)."""
        if not self.depends_on_theta and self._constant is not None:
            return self._constant
        Z, W = self.columns(theta, n)
        basis = NullspaceBasis(_orthonormal(Z, "operator.nullspace"),
                               None if W is None
                               else _orthonormal(W, "operator.nullspace (transpose)"))
        if not self.depends_on_theta:
            self._constant = basis
        return basis


class NullspaceBasis:
    """Orthonormal bases Z of the nullspace of A and W of that of Aᵀ, at one θ (serial).

    ``W is Z`` when the nullspace of Aᵀ is that of A.
    """

    def __init__(self, Z: np.ndarray, W: np.ndarray | None = None) -> None:
        self.Z = Z
        self.W = Z if W is None else W

    def basis(self, transpose: bool) -> np.ndarray:
        """W (the nullspace of Aᵀ) when ``transpose``, else Z."""
        return self.W if transpose else self.Z

    def remove(self, v: np.ndarray, *, transpose: bool) -> np.ndarray:
        """``v`` without its component along Z (or along W when ``transpose``): a new array."""
        V = self.basis(transpose)
        return v - V @ (V.T @ v)

    def component(self, v: np.ndarray, *, transpose: bool) -> np.ndarray:
        """The component of ``v`` along Z (or along W when ``transpose``)."""
        V = self.basis(transpose)
        return V @ (V.T @ v)

    def measure(self, v: np.ndarray, *, transpose: bool) -> float:
        """‖component of v along Z (or W)‖ / ‖v‖ (0 for v = 0)."""
        size = float(np.linalg.norm(v))
        if size == 0.0:
            return 0.0
        return float(np.linalg.norm(self.basis(transpose).T @ v)) / size


def nullspace_residuals(bound: Any, probe: np.ndarray) -> list[tuple[str, int, float]]:
    """``‖A z_j‖ / (‖A‖·‖z_j‖)`` for every declared z_j (and ``‖Aᵀ w_j‖ / (‖A‖·‖w_j‖)``),
    ‖A‖ estimated as ``‖A u‖/‖u‖`` for the random ``probe`` u: one product per vector.

    Returns ``(callback name, column, ratio)`` for each vector (serial bound problem).
    """
    declared = bound.operator.nullspace
    Z, W = declared.columns(bound.theta_operator, bound.n_local)
    scale = float(np.linalg.norm(bound.matvec(probe, check_finite=True))
                  / np.linalg.norm(probe))
    out = []
    for name, V, product in (("operator.nullspace", Z, bound.matvec),
                             ("operator.nullspace (transpose)", W, bound.rmatvec)):
        if V is None:
            continue
        for j in range(V.shape[1]):
            size = float(np.linalg.norm(V[:, j]))
            residual = float(np.linalg.norm(product(V[:, j], check_finite=True)))
            out.append((name, j, residual / (scale * size) if scale * size > 0 else 0.0))
    if W is None and not bound.operator.symmetric_rmatvec:
        for j in range(Z.shape[1]):
            size = float(np.linalg.norm(Z[:, j]))
            residual = float(np.linalg.norm(bound.rmatvec(Z[:, j], check_finite=True)))
            out.append(("operator.nullspace (as the transpose's)", j,
                        residual / (scale * size) if scale * size > 0 else 0.0))
    return out


def _as_columns(value: Any, name: str, n: int | None, *, callback: bool = False) -> np.ndarray:
    """Declared nullspace vectors as a float64 (N, k) array, or a clear error."""
    error = CallbackError if callback else InputError
    arr = np.asarray(value)
    if arr.dtype.kind == "c" or arr.dtype.kind not in "biuf":
        raise error(name, f"expected real vectors, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0 or (n is not None and arr.shape[0] != n):
        raise error(name, f"expected an array of shape (N,) or (N, k) with N = "
                          f"{'N' if n is None else n} and k >= 1, got {arr.shape}")
    if arr.shape[1] >= arr.shape[0]:
        raise error(name, f"declares {arr.shape[1]} vectors for N = {arr.shape[0]} unknowns: "
                          "a nullspace has fewer vectors than unknowns")
    arr = np.array(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise error(name, "contains non-finite values (NaN or Inf)")
    return arr


def _evaluate(basis: np.ndarray | Callable[[np.ndarray], Any], theta: np.ndarray, n: int,
              name: str) -> np.ndarray:
    if not callable(basis):
        if basis.shape[0] != n:
            raise InputError(name.replace("operator.", ""),
                             f"has {basis.shape[0]} rows, but A is {n} × {n}")
        return basis
    try:
        value = basis(theta)
    except Exception as exc:
        raise CallbackError(name, f"raised {type(exc).__name__}: {exc}") from exc
    return _as_columns(value, name, n, callback=True)


def _orthonormal(V: np.ndarray, name: str) -> np.ndarray:
    """An orthonormal basis of the span of V's columns (QR), refusing dependent columns."""
    Q, R = np.linalg.qr(V)
    Q = Q * np.where(np.diag(R) < 0, -1.0, 1.0)  # column j of Q along the j-th vector
    diagonal = np.abs(np.diag(R))
    scale = float(np.linalg.norm(V, axis=0).max())
    if scale == 0.0 or diagonal.min() <= 1e-10 * scale:
        raise CallbackError(name, f"the {V.shape[1]} vectors are linearly dependent (or zero): "
                                  "declare a basis of the nullspace")
    return Q


"""A preconditioner for a singular A, projected so that the Krylov iterations stay in range.

For ``A Z = 0`` and ``Wᵀ A = 0`` (orthonormal Z and W), the right-preconditioned methods of
:mod:`krylov_adjoint.krylov` build x from ``M r`` with residuals r in range(A) = W⊥. Using
``M' = (I − ZZᵀ) M (I − WWᵀ)`` keeps every correction orthogonal to Z (so x is the
minimum-norm solution when x₀ is) and hides from M the round-off along W that would
otherwise grow: for a pure-Neumann problem CG with AMG then converges where the unprojected
iteration drifts along the constants. The transpose ``M'ᵀ = (I − WWᵀ) Mᵀ (I − ZZᵀ)`` is the
same construction for the adjoint solve with Aᵀ (whose nullspace is W), from the same set-up.
"""

from __future__ import annotations

import numpy as np

from .base import IdentityPreconditioner, Preconditioner, PreconditionerBase

__all__ = ["ProjectedPreconditioner"]


class ProjectedPreconditioner(PreconditionerBase):
    """``M' = (I − ZZᵀ) M (I − WWᵀ)`` and its transpose (see the module docstring).

    Parameters
    ----------
    inner : Preconditioner or None
        M (None: the identity).
    Z : ndarray, shape (N, k)
        Orthonormal basis of the nullspace of A: removed from every output of ``apply``.
    W : ndarray, shape (N, k), optional
        Orthonormal basis of the nullspace of Aᵀ: removed from every input of ``apply``
        (default Z).

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.full((2, 1), 2 ** -0.5)
    >>> M = ProjectedPreconditioner(None, Z)
    >>> M.apply(np.array([1.0, 3.0])), M.is_symmetric
    (array([-1.,  1.]), True)
    """

    def __init__(self, inner: Preconditioner | None, Z: np.ndarray,
                 W: np.ndarray | None = None) -> None:
        n = Z.shape[0]
        self.inner = IdentityPreconditioner(n) if inner is None else inner
        self.shape = (n, n)
        self.Z = Z
        self.W = Z if W is None else W
        self.dtype = getattr(self.inner, "dtype", np.float64)

    @property
    def is_symmetric(self) -> bool | None:  # type: ignore[override]
        """As M's when Z = W (then M' is symmetric exactly when M is); None otherwise."""
        if self.W is self.Z:
            return getattr(self.inner, "is_symmetric", None)
        return None

    def apply(self, r: np.ndarray) -> np.ndarray:
        out = self.inner.apply(_remove(r, self.W))
        return _remove(out, self.Z)

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        out = self.inner.apply_transpose(_remove(r, self.Z))
        return _remove(out, self.W)


def _remove(v: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``(I − VVᵀ) v`` for orthonormal V: a new array."""
    return v - V @ (V.T @ v)

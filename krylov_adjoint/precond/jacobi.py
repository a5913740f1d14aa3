"""Jacobi (diagonal) preconditioning."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .base import PreconditionerBase

__all__ = ["JacobiPreconditioner"]


class JacobiPreconditioner(PreconditionerBase):
    """M = D⁻¹, D the diagonal of an assembled matrix; Mᵀ = M.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> M = JacobiPreconditioner(sp.diags([2.0, 4.0]))
    >>> M.apply(np.ones(2))
    array([0.5 , 0.25])
    """

    is_symmetric = True

    def __init__(self, A: Any) -> None:
        matrix = sp.csr_matrix(A, dtype=_field(A))
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"JacobiPreconditioner: expected a square matrix, got {matrix.shape}")
        diagonal = matrix.diagonal()
        zero = np.flatnonzero(diagonal == 0)
        if zero.size:
            raise ValueError(f"JacobiPreconditioner: zero diagonal entry at row {zero[0]} "
                             f"({zero.size} in all)")
        self.shape = matrix.shape
        self.inverse_diagonal = 1.0 / diagonal
        self.dtype = self.inverse_diagonal.dtype
        if np.iscomplexobj(diagonal):  # Mᴴ = conj(D)⁻¹: symmetric, not Hermitian
            self.is_symmetric = None
            self.apply_transpose = self._apply_conjugate  # type: ignore[method-assign]

    def apply(self, r: np.ndarray) -> np.ndarray:
        return self.inverse_diagonal * r

    apply_transpose = apply

    def _apply_conjugate(self, r: np.ndarray) -> np.ndarray:
        return np.conj(self.inverse_diagonal) * r


def _field(A: Any) -> Any:
    """complex128 for a complex matrix (its ``apply_transpose`` is then Mᴴ), else float64."""
    return np.complex128 if np.iscomplexobj(A) else np.float64

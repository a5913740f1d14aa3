"""Incomplete LU through scipy's ``spilu``; its factors also solve the transposed system."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .base import PreconditionerBase

__all__ = ["ILUPreconditioner"]


class ILUPreconditioner(PreconditionerBase):
    """M = (L̃Ũ)⁻¹ from ``scipy.sparse.linalg.spilu``; Mᵀ applies the same factors transposed.

    Parameters
    ----------
    A : sparse matrix
    drop_tol, fill_factor : float
        Passed to :func:`scipy.sparse.linalg.spilu`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.diags([-1.0, 3.0, -2.0], [-1, 0, 1], shape=(5, 5), format="csc")
    >>> M = ILUPreconditioner(A, drop_tol=0.0)
    >>> bool(np.allclose(A @ M.apply(np.ones(5)), 1.0))
    True
    """

    def __init__(self, A: Any, *, drop_tol: float = 1e-4, fill_factor: float = 10.0) -> None:
        matrix = sp.csc_matrix(A, dtype=np.float64)
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"ILUPreconditioner: expected a square matrix, got {matrix.shape}")
        try:
            self.factors = spla.spilu(matrix, drop_tol=drop_tol, fill_factor=fill_factor)
        except RuntimeError as exc:
            raise ValueError(f"ILUPreconditioner: spilu failed ({exc}); the matrix may be "
                             "singular or need a smaller drop_tol") from exc
        self.shape = matrix.shape

    def apply(self, r: np.ndarray) -> np.ndarray:
        return self.factors.solve(r)

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        return self.factors.solve(r, trans="T")

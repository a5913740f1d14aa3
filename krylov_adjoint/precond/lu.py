"""A sparse direct factorisation as an exact preconditioner; its factors solve the adjoint too."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .base import PreconditionerBase

__all__ = ["LUPreconditioner"]


class LUPreconditioner(PreconditionerBase):
    """M = A⁻¹ from ``scipy.sparse.linalg.splu``; Mᵀ = A⁻ᵀ from the same factors.

    For small or hard problems (high Péclet numbers, indefinite operators) one factorisation
    gives both solves: the primal and the adjoint Krylov solves converge in one iteration at
    the θ of the factorisation, and in a few at nearby θ while it is kept (lagged). It is a
    factorisation of A(θ): with ``preconditioner="lu"`` the solver sets it up again for every
    new θ unless ``reuse_preconditioner=True`` asks to lag it.

    Parameters
    ----------
    A : sparse matrix
    permc_spec : str
        Column ordering of :func:`scipy.sparse.linalg.splu` (default ``"COLAMD"``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.diags([-1.0, 3.0, -2.0], [-1, 0, 1], shape=(5, 5), format="csc")
    >>> M = LUPreconditioner(A)
    >>> bool(np.allclose(A @ M.apply(np.ones(5)), 1.0))
    True
    >>> bool(np.allclose(A.T @ M.apply_transpose(np.ones(5)), 1.0))
    True
    """

    #: With a new θ the factors are of another matrix: set up again by default.
    refresh_per_theta = True

    def __init__(self, A: Any, *, permc_spec: str = "COLAMD") -> None:
        matrix = sp.csc_matrix(A, dtype=np.complex128 if np.iscomplexobj(A) else np.float64)
        self._trans = "H" if np.iscomplexobj(matrix) else "T"  # Mᴴ for a complex matrix
        self.dtype = matrix.dtype
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"LUPreconditioner: expected a square matrix, got {matrix.shape}")
        try:
            self.factors = spla.splu(matrix, permc_spec=permc_spec)
        except RuntimeError as exc:  # "Factor is exactly singular"
            raise ValueError(f"LUPreconditioner: splu failed ({exc}): the assembled matrix is "
                             "singular") from exc
        self.shape = matrix.shape

    def apply(self, r: np.ndarray) -> np.ndarray:
        return self.factors.solve(np.asarray(r, dtype=self.factors.U.dtype))

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        return self.factors.solve(np.asarray(r, dtype=self.factors.U.dtype), trans=self._trans)

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

    M is not a symmetric map, even for a symmetric positive definite A (:attr:`is_symmetric`
    is False): SuperLU's incomplete factorisation reorders columns, pivots rows and drops
    fill by magnitude, none of which is symmetric. Conjugate gradients therefore refuse it,
    and ``AdjointSolver(method="auto")`` switches to GMRES with it. (CG with ILU on the 64×64
    :func:`~krylov_adjoint.gallery.diffusion_2d` problem stopped at 10 000 iterations without
    converging; the dot test gives ``|⟨Mu, v⟩ − ⟨u, Mv⟩| ≈ 2e-3 ‖Mu‖‖v‖``.)

    Parameters
    ----------
    A : sparse matrix
    drop_tol, fill_factor : float
        Passed to :func:`scipy.sparse.linalg.spilu`.

    Attributes
    ----------
    is_symmetric : bool
        False.
    asymmetry : str
        Why M is not symmetric.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.diags([-1.0, 3.0, -2.0], [-1, 0, 1], shape=(5, 5), format="csc")
    >>> M = ILUPreconditioner(A, drop_tol=0.0)
    >>> bool(np.allclose(A @ M.apply(np.ones(5)), 1.0))
    True
    """

    is_symmetric = False
    asymmetry = ("an incomplete LU from spilu reorders columns, pivots rows and drops fill by "
                 "magnitude, so M is not symmetric even for a symmetric A")

    def __init__(self, A: Any, *, drop_tol: float = 1e-4, fill_factor: float = 10.0) -> None:
        matrix = sp.csc_matrix(A, dtype=np.complex128 if np.iscomplexobj(A) else np.float64)
        self._trans = "H" if np.iscomplexobj(matrix) else "T"  # Mᴴ for a complex matrix
        self.dtype = matrix.dtype
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"ILUPreconditioner: expected a square matrix, got {matrix.shape}")
        try:
            self.factors = spla.spilu(matrix, drop_tol=drop_tol, fill_factor=fill_factor)
        except RuntimeError as exc:
            raise ValueError(f"ILUPreconditioner: spilu failed ({exc}); the matrix may be "
                             "singular or need a smaller drop_tol") from exc
        self.shape = matrix.shape

    def apply(self, r: np.ndarray) -> np.ndarray:
        return self.factors.solve(np.asarray(r, dtype=self.factors.U.dtype))

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        return self.factors.solve(np.asarray(r, dtype=self.factors.U.dtype), trans=self._trans)

"""Checks and small matrix helpers of the AMG set-up: the matrix, pyamg's options, symmetry."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pyamg
import scipy.sparse as sp

from ._amg_cycle import CYCLES

#: AMG methods: name -> (pyamg set-up function name, short description).
AMG_METHODS: dict[str, str] = {
    "sa": "smoothed aggregation",
    "rs": "classical Ruge-Stueben",
    "air": "approximate ideal restriction",
}

# Relative tolerance under which A is taken as numerically symmetric.
_SYMMETRY_RTOL = 1e-12


def _as_float_csr(A: Any) -> sp.csr_array:
    """Validate ``A`` and return a canonical CSR copy: float64, or complex128 for a complex
    matrix (pyamg's set-up and kernels take complex matrices)."""
    if sp.issparse(A):
        field = np.complex128 if np.issubdtype(A.dtype, np.complexfloating) else np.float64
        matrix = sp.csr_array(A, dtype=field, copy=True)
    elif isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"AMGPreconditioner: A must be a 2-D matrix, got ndim={A.ndim}")
        field = np.complex128 if np.iscomplexobj(A) else np.float64
        matrix = sp.csr_array(np.asarray(A, dtype=field))
    else:
        raise TypeError(
            f"AMGPreconditioner: A must be a scipy.sparse matrix, got {type(A).__name__}"
        )
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"AMGPreconditioner: A must be square, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError("AMGPreconditioner: A is empty (0 x 0)")
    finite = np.isfinite(matrix.data)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        row = int(np.searchsorted(matrix.indptr, bad[0], side="right") - 1)
        raise ValueError(f"AMGPreconditioner: A has {bad.size} non-finite (NaN or Inf) "
                         f"entries, the first in row {row}")
    matrix.sum_duplicates()
    matrix.sort_indices()
    zero = np.flatnonzero(matrix.diagonal() == 0)
    if zero.size:
        raise ValueError(
            f"AMGPreconditioner: zero diagonal entry in row {zero[0]} ({zero.size} in all): "
            "the smoothers and the smoothing of the interpolation divide by the diagonal; "
            "AMG needs a nonzero diagonal (for a saddle-point or constrained system, "
            "precondition another way)"
        )
    return matrix


def _pyamg_solver(method: str) -> Any:
    """The pyamg set-up function of an AMG method, or a ValueError listing the methods."""
    solvers = {"sa": pyamg.smoothed_aggregation_solver, "rs": pyamg.ruge_stuben_solver,
               "air": pyamg.air_solver}
    if method not in solvers:
        raise ValueError(
            f"AMGPreconditioner: unknown method {method!r}; expected one of "
            f"{', '.join(repr(m) for m in AMG_METHODS)}"
        )
    return solvers[method]


# pyamg set-up arguments that AMGPreconditioner sets itself (or takes under another name).
_MANAGED_PYAMG_ARGUMENTS = frozenset(
    {"A", "B", "presmoother", "postsmoother", "max_levels", "max_coarse"})


def _pyamg_option_names(method: str) -> frozenset[str]:
    """The options forwarded to pyamg's set-up function for ``method``: its named
    parameters, but those AMGPreconditioner sets itself. (Its ``**kwargs`` go to
    ``MultilevelSolver``, whose only option, ``coarse_solver``, is AMGPreconditioner's.)"""
    parameters = inspect.signature(_pyamg_solver(method)).parameters.values()
    return frozenset(p.name for p in parameters
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) - \
        _MANAGED_PYAMG_ARGUMENTS


def _checked_cycle(cycle: Any) -> str:
    cycle = str(cycle).upper()
    if cycle not in CYCLES:
        raise ValueError(
            f"AMGPreconditioner: cycle {cycle!r} is not supported; expected one of "
            f"{', '.join(CYCLES)} (AMLI is not a fixed linear map)"
        )
    return cycle


def _is_hermitian(A: sp.csr_array) -> bool:
    """Whether a complex ``A`` equals ``Aᴴ`` to 1e-12 relative (pyamg's ``"hermitian"``)."""
    scale = np.abs(A.data).max() if A.nnz else 0.0
    difference = (A - A.conj().T).tocsr()
    difference.eliminate_zeros()
    return difference.nnz == 0 or bool(np.abs(difference.data).max() <= _SYMMETRY_RTOL * scale)


def _symmetry(A: sp.csr_array) -> tuple[bool, bool]:
    """``(numerically symmetric, exactly symmetric)``; numerically: ``max|A - Aᵀ| <= 1e-12
    max|A|``."""
    scale = np.abs(A.data).max() if A.nnz else 0.0
    difference = (A - A.T).tocsr()
    difference.eliminate_zeros()
    if difference.nnz == 0:
        return True, True
    return bool(np.abs(difference.data).max() <= _SYMMETRY_RTOL * scale), False


def _same_matrix(X: Any, Y: Any) -> bool:
    """Whether two canonical CSR matrices hold identical arrays."""
    return (X.format == Y.format == "csr" and X.shape == Y.shape and X.nnz == Y.nnz
            and np.array_equal(X.indptr, Y.indptr) and np.array_equal(X.indices, Y.indices)
            and np.array_equal(X.data, Y.data))


def _is_transpose(R: Any, P: Any) -> bool:
    """Whether ``R = Pᵀ`` to rounding (any sparse formats, BSR included)."""
    if R.shape != (P.shape[1], P.shape[0]):
        return False
    difference = sp.csr_array(R) - sp.csr_array(P.T)
    if difference.nnz == 0:
        return True
    scale = np.abs(sp.csr_array(R).data).max() if R.nnz else 0.0
    return bool(np.abs(difference.data).max() <= 1e-14 * scale)


def _fast_format(M: Any) -> Any:
    """CSR for products, unless ``M`` is BSR with real blocks (block smoothers need those)."""
    if M.format == "bsr" and M.blocksize != (1, 1):
        return M
    return M if M.format == "csr" else M.tocsr()


def _transpose_of(M: Any) -> Any:
    """``Mᵀ`` in a format fit for fast products and pyamg's relaxation kernels."""
    if M.format == "bsr":
        return M.T  # bsr with transposed blocks
    MT = M.T
    return MT if MT.format == "csr" else MT.tocsr()

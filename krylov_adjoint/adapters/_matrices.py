"""Turn the matrices users hand over (scipy, numpy, petsc4py) into scipy sparse matrices."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import refuse_complex

__all__ = ["as_sparse", "as_coo", "index_dtype"]

_ALIGNED_FORMATS = ("csr", "csc", "coo")


def _petsc_to_csr(A: Any, name: str) -> sp.csr_matrix | None:
    """A serial petsc4py ``Mat`` as CSR, or None when ``A`` is not a PETSc matrix.

    petsc4py is never imported here: a user holding a PETSc ``Mat`` has already imported it.
    """
    petsc = sys.modules.get("petsc4py.PETSc")
    if petsc is None or not isinstance(A, petsc.Mat):
        return None
    if A.getComm().getSize() != 1:
        raise TypeError(f"{name}: a distributed PETSc Mat cannot be gathered here; use the "
                        "PETSc backend, or pass the serial matrix")
    indptr, indices, data = A.getValuesCSR()
    refuse_complex(data, name)  # a PETSc built with complex scalars
    rows, cols = A.getSize()
    return sp.csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices),
                          np.asarray(indptr)), shape=(rows, cols))


def as_sparse(A: Any, name: str, *, aligned: bool = False) -> sp.spmatrix | np.ndarray:
    """A user's matrix as a scipy sparse matrix (or a 2-D numpy array, kept dense).

    Parameters
    ----------
    A : scipy.sparse matrix or array, 2-D numpy array, or serial petsc4py ``Mat``
    name : str
        Used in error messages.
    aligned : bool
        When True the caller relies on the order of ``A.data`` (a VJP is written against it),
        so only formats whose ``data`` is a flat vector of entries are accepted: CSR, CSC,
        COO, dense arrays and PETSc AIJ matrices (read through ``getValuesCSR``).

    Returns
    -------
    scipy.sparse matrix or ndarray
        Float64. Sparse arrays (``sp.csr_array``) are returned as matrices of the same format.

    Raises
    ------
    InputError
        For complex matrices (the adapters build real systems), naming ``name``.
    """
    petsc = _petsc_to_csr(A, name)
    if petsc is not None:
        return petsc
    refuse_complex(A, name)
    if isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array, got shape {A.shape}")
        return np.asarray(A, dtype=np.float64)
    if sp.issparse(A):
        if aligned and A.format not in _ALIGNED_FORMATS:
            raise TypeError(
                f"{name}: a {A.format.upper()} matrix has no flat list of entries to align a "
                "cotangent with; return CSR, CSC or COO (e.g. A.tocsr()) and write the VJP "
                "against its .data")
        if A.format not in _ALIGNED_FORMATS:
            A = A.tocsr()
        converted = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix}[A.format]
        return converted(A, dtype=np.float64)
    if isinstance(A, spla.LinearOperator):
        raise TypeError(
            f"{name}: a LinearOperator has no nonzero pattern, which is needed here (the "
            "derivative is taken entry by entry); pass the assembled sparse matrix. A "
            "θ-independent LinearOperator can be used as ParametricOperator.constant(A).")
    raise TypeError(f"{name}: expected a scipy sparse matrix, a 2-D numpy array or a serial "
                    f"petsc4py Mat, got {type(A).__name__}")


def as_coo(A: Any, name: str) -> sp.coo_matrix:
    """A fixed user matrix in COO form, for building patterns.

    Explicit zeros of a sparse matrix are kept; zeros of a dense array are dropped.
    """
    return sp.coo_matrix(as_sparse(A, name))


def index_dtype(n: int, nnz: int) -> type:
    """The index dtype scipy would choose for a matrix of this size (so it never copies)."""
    return np.int32 if max(n, nnz) < np.iinfo(np.int32).max else np.int64

"""Assembled PETSc AIJ matrices from per-rank CSR rows, and their explicit transposes."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...errors import CallbackError, NonFiniteError
from ...problem.structure import Structure
from ._import import petsc
from .collective import ErrorGuard
from .layout import Layout

__all__ = ["LocalRows", "as_local_rows", "AssembledMatrix"]


@dataclass(frozen=True)
class LocalRows:
    """This rank's rows of a matrix in CSR form, with global column indices."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray


def as_local_rows(value: Any, layout: Layout, name: str = "operator.assemble") -> Any:
    """Validate an ``assemble`` output (local; raises :class:`CallbackError`).

    Accepts a scipy.sparse matrix or a CSR triple ``(indptr, indices, data)`` of shape
    (n_local, N) with global column indices, or a PETSc Mat (returned as is after a size
    check).
    """
    PETSc = petsc()
    n_local, n = layout.local_size, layout.size
    if isinstance(value, PETSc.Mat):
        (rows, n_rows), (cols, n_cols) = value.getSizes()
        if (rows, n_rows, n_cols) != (n_local, n, n):
            raise CallbackError(name, f"expected a Mat with local rows {n_local} and global "
                                      f"size ({n}, {n}), got local rows {rows} and ({n_rows}, "
                                      f"{n_cols})")
        return value
    if isinstance(value, tuple) and len(value) == 3:
        indptr, indices, data = (np.asarray(v) for v in value)
        try:
            value = sp.csr_matrix((data, indices, indptr), shape=(n_local, n))
        except (ValueError, TypeError) as exc:
            raise CallbackError(name, f"not a valid CSR triple of shape ({n_local}, {n}): "
                                      f"{exc}") from exc
    if not sp.issparse(value):
        raise CallbackError(name, "expected a scipy.sparse matrix (n_local, N), a CSR triple "
                                  f"or a PETSc Mat, got {type(value).__name__}")
    if value.shape != (n_local, n):
        raise CallbackError(name, f"expected this rank's rows, shape ({n_local}, {n}), got "
                                  f"{value.shape}")
    csr = sp.csr_matrix(value, dtype=np.float64)
    csr.sum_duplicates()
    csr.sort_indices()
    if not np.isfinite(csr.data).all():
        raise NonFiniteError(name, "the matrix has non-finite entries")
    int_type = PETSc.IntType
    return LocalRows(csr.indptr.astype(int_type), csr.indices.astype(int_type), csr.data)


def explicit_transpose(mat: Any, out: Any = None) -> Any:
    """Collective: the explicit transpose of ``mat`` (into ``out``, made by an earlier call).

    Careful: petsc4py's ``mat.transpose()`` without an argument transposes *in place*.
    """
    return mat.transpose(petsc().Mat() if out is None else out)


class AssembledMatrix:
    """The assembled A(θ) as a PETSc AIJ matrix, updated in place when its pattern is kept.

    Optionally with its explicit transpose (refreshed on demand, once per update), so that
    transposed applications run as forward ones.
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.mat: Any = None
        self._transpose: Any = None
        self._owned = True
        self._pattern: tuple[int, int] | None = None
        self._fresh = False

    def update(self, rows: Any, guard: ErrorGuard, structure: Structure = Structure.GENERAL
               ) -> Any:
        """Collective: build or refresh the matrix from validated rows (or a Mat)."""
        PETSc = petsc()
        self._fresh = False
        if isinstance(rows, PETSc.Mat):
            self._release()
            self.mat, self._owned = rows, False
        else:
            nnz = int(rows.indptr[-1])
            pattern = (nnz, zlib.crc32(rows.indices))
            same = self.mat is not None and self._owned and \
                self.layout.comm.allreduce(int(self._pattern == pattern), op=_min_op()) == 1
            if same:
                self.mat.zeroEntries()
                self.mat.setValuesCSR(rows.indptr, rows.indices, rows.data)
                self.mat.assemble()
            else:
                self._release()
                n_local, n = self.layout.local_size, self.layout.size
                self.mat = PETSc.Mat().createAIJ(
                    size=((n_local, n), (n_local, n)),
                    csr=(rows.indptr, rows.indices, rows.data), comm=self.layout.comm)
                self.mat.assemble()
                self._owned = True
            self._pattern = pattern
        if structure.is_symmetric:
            self.mat.setOption(PETSc.Mat.Option.SYMMETRIC, True)
        if structure is Structure.SPD:
            self.mat.setOption(PETSc.Mat.Option.SPD, True)
        guard.checkpoint("the assembly of the preconditioner matrix")
        return self.mat

    def transpose(self) -> Any:
        """Collective: the explicit transpose of the current matrix (formed once per update)."""
        if not self._fresh:
            try:
                self._transpose = explicit_transpose(self.mat, self._transpose)
            except petsc().Error:  # a transpose of an earlier matrix object: start again
                self._drop_transpose()
                self._transpose = explicit_transpose(self.mat)
            self._fresh = True
        return self._transpose

    def _drop_transpose(self) -> None:
        if self._transpose is not None:
            self._transpose.destroy()
            self._transpose = None

    def _release(self) -> None:
        self._drop_transpose()
        if self.mat is not None and self._owned:
            self.mat.destroy()
        self.mat = None

    def destroy(self) -> None:
        """Free the PETSc objects this class created."""
        self._release()


def _min_op() -> Any:
    from ._import import mpi

    return mpi().MIN

"""A fixed sparsity pattern, and the cotangent ``λ xᵀ`` restricted to it.

For ``A(θ)`` stored as values on a fixed pattern, the operator part of the adjoint gradient is

    λᵀ (∂A/∂θ) x = Σ_(i,j) stored  λ_i x_j ∂A_ij/∂θ,

so it needs ``λ_i x_j`` only at the stored entries (a vector of nnz values, never the dense
outer product), pulled back to θ by the VJP of the assembly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._checks import as_size, refuse_complex
from ._matrices import as_sparse, index_dtype

__all__ = ["SparsityPattern", "pattern_cotangent", "entry_coordinates", "entry_cotangent"]


class SparsityPattern:
    """The nonzero layout of a square N × N matrix, in canonical CSR order.

    Canonical means: row pointers ``indptr``, and in each row the column ``indices`` sorted and
    without duplicates. A matrix on this pattern is a vector of ``nnz`` values.

    Parameters
    ----------
    indptr : array of int, shape (N + 1,)
        Row pointers: row i holds the entries ``indptr[i]:indptr[i + 1]``.
    indices : array of int, shape (nnz,)
        Column of each entry, sorted and unique within each row.
    n : int
        N.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> pattern = SparsityPattern.from_matrix(sp.diags([1.0, 2.0, 1.0], [-1, 0, 1], (3, 3)))
    >>> pattern.nnz
    7
    >>> lam, x = np.array([1.0, 2.0, 3.0]), np.array([1.0, 10.0, 100.0])
    >>> pattern.cotangent(lam, x)          # λ_i x_j at (0,0) (0,1) (1,0) (1,1) (1,2) (2,1) (2,2)
    array([  1.,  10.,   2.,  20., 200.,  30., 300.])
    >>> pattern.matrix(np.arange(7.0)).toarray()
    array([[0., 1., 0.],
           [2., 3., 4.],
           [0., 5., 6.]])
    """

    def __init__(self, indptr: Any, indices: Any, n: int) -> None:
        n = as_size(n, "n", minimum=1)
        indptr = np.asarray(indptr)
        indices = np.asarray(indices)
        if n <= 0 or indptr.shape != (n + 1,) or indices.ndim != 1:
            raise ValueError(f"SparsityPattern: expected indptr of shape ({n + 1},) and 1-D "
                             f"indices, got {indptr.shape} and {indices.shape}")
        if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
            raise ValueError("SparsityPattern: indptr must start at 0, be nondecreasing and end "
                             "at len(indices)")
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(f"SparsityPattern: column indices must lie in [0, {n})")
        rows = np.repeat(np.arange(n), np.diff(indptr))
        step = np.diff(indices.astype(np.int64))
        if np.any((step <= 0) & (rows[1:] == rows[:-1])):
            raise ValueError("SparsityPattern: column indices must be sorted and unique within "
                             "each row (canonical CSR); use SparsityPattern.from_matrix")
        self._set(np.array(indptr), np.array(indices), n)

    @classmethod
    def _trusted(cls, indptr: np.ndarray, indices: np.ndarray, n: int) -> SparsityPattern:
        """A pattern from arrays already known to be canonical (no O(nnz) validation)."""
        pattern = cls.__new__(cls)
        pattern._set(indptr, indices, n)
        return pattern

    def _set(self, indptr: np.ndarray, indices: np.ndarray, n: int) -> None:
        dtype = index_dtype(n, indices.size)
        self.n = int(n)
        self.indptr = _frozen(indptr.astype(dtype, copy=False))
        self.indices = _frozen(indices.astype(dtype, copy=False))
        self._rows: np.ndarray | None = None
        self._transpose: tuple[np.ndarray, SparsityPattern] | None = None

    # -- construction -----------------------------------------------------------
    @classmethod
    def from_matrix(cls, A: Any) -> SparsityPattern:
        """The pattern of every stored entry of ``A`` (explicit zeros included).

        ``A`` may be any scipy sparse matrix, a 2-D array (every entry is stored) or a serial
        petsc4py ``Mat``.
        """
        matrix = as_sparse(A, "A")
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"SparsityPattern: the matrix must be square, got {matrix.shape}")
        rows, cols = entry_coordinates(matrix)
        return cls.from_coordinates(rows, cols, matrix.shape[0])[0]

    @classmethod
    def from_coordinates(cls, rows: Any, cols: Any, n: int
                         ) -> tuple[SparsityPattern, np.ndarray]:
        """The pattern of entries at ``(rows[k], cols[k])``, repeated entries merged.

        Returns
        -------
        pattern : SparsityPattern
        slots : ndarray of int, shape (len(rows),)
            ``slots[k]`` is the position of entry k in the pattern's values, so that values
            given per entry are summed into the pattern by
            ``np.bincount(slots, entry_values, minlength=pattern.nnz)``.
        """
        n = as_size(n, "n", minimum=1)
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        keys = rows * n + cols
        unique, slots = np.unique(keys, return_inverse=True)
        counts = np.bincount(unique // n, minlength=n)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return cls._trusted(indptr, unique % n, n), slots.reshape(-1)

    # -- properties ---------------------------------------------------------------
    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.indices.size)

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, N)``."""
        return (self.n, self.n)

    @property
    def rows(self) -> np.ndarray:
        """The row of each stored entry, shape (nnz,) (the columns are ``indices``)."""
        if self._rows is None:
            self._rows = _frozen(np.repeat(np.arange(self.n, dtype=self.indices.dtype),
                                           np.diff(self.indptr)))
        return self._rows

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparsityPattern):
            return NotImplemented
        return (self.n == other.n and np.array_equal(self.indptr, other.indptr)
                and np.array_equal(self.indices, other.indices))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SparsityPattern(n={self.n}, nnz={self.nnz})"

    # -- values on the pattern -------------------------------------------------------
    def cotangent(self, lam: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``λ_i x_j`` at each stored entry (i, j): the outer product λxᵀ on the pattern.

        This is the cotangent of the matrix values for the scalar ``λᵀ A x``.
        """
        return entry_cotangent(lam, x, self.rows, self.indices)

    def matrix(self, values: np.ndarray) -> sp.csr_matrix:
        """The CSR matrix with these values (the index arrays are shared, not copied)."""
        refuse_complex(values, "values")
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.nnz,):
            raise ValueError(f"expected {self.nnz} values, got shape {values.shape}")
        A = sp.csr_matrix((values, self.indices, self.indptr), shape=self.shape, copy=False)
        A.has_sorted_indices = True
        A.has_canonical_format = True
        return A

    def transpose(self, values: np.ndarray) -> sp.csr_matrix:
        """The CSR matrix of Aᵀ, given the values of A (one gather, no sort)."""
        perm, transposed = self._transposed()
        return transposed.matrix(np.asarray(values, dtype=np.float64)[perm])

    @property
    def transpose_permutation(self) -> np.ndarray:
        """``perm`` such that ``values[perm]`` are the values of Aᵀ in CSR order.

        (On the transposed pattern, which is this one when the pattern is structurally
        symmetric.)
        """
        return self._transposed()[0]

    @property
    def is_structurally_symmetric(self) -> bool:
        """True when (j, i) is stored whenever (i, j) is."""
        return self._transposed()[1] == self

    def symmetry_defect(self, values: np.ndarray) -> float:
        """``max |A − Aᵀ|`` for values on this pattern (inf if not structurally symmetric)."""
        if not self.is_structurally_symmetric:
            return float("inf")
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return 0.0
        return float(np.max(np.abs(values - values[self._transposed()[0]])))

    def _transposed(self) -> tuple[np.ndarray, SparsityPattern]:
        if self._transpose is None:
            order = np.arange(self.nnz, dtype=np.int64)
            T = sp.csr_matrix((order, self.indices, self.indptr), shape=self.shape).T.tocsr()
            self._transpose = (_frozen(T.data),
                               SparsityPattern._trusted(T.indptr, T.indices, self.n))
        return self._transpose


def entry_coordinates(A: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each entry of ``A.data``, in the order of ``A.data``.

    ``A`` is a CSR, CSC or COO matrix, or a 2-D array (entries in row-major order).
    """
    if isinstance(A, np.ndarray):
        rows, cols = np.indices(A.shape)
        return rows.ravel(), cols.ravel()
    if A.format == "coo":
        return np.asarray(A.row), np.asarray(A.col)
    outer = np.repeat(np.arange(A.shape[0] if A.format == "csr" else A.shape[1]),
                      np.diff(A.indptr))
    if A.format == "csr":
        return outer, np.asarray(A.indices)
    if A.format == "csc":
        return np.asarray(A.indices), outer
    raise TypeError(f"entry_coordinates: unsupported format {A.format!r}")


def pattern_cotangent(A: Any, lam: Any, x: Any) -> np.ndarray:
    """``λ_i x_j`` for each stored entry (i, j) of ``A``, aligned with ``A.data``.

    This is what the VJP of an assembly ``θ ↦ A.data`` must be applied to, to get
    ``λᵀ (∂A/∂θ) x``: the operator VJP expected by :class:`~krylov_adjoint.ParametricOperator`.

    Parameters
    ----------
    A : CSR, CSC or COO matrix, 2-D array, or serial petsc4py ``Mat``
        Only the positions of the stored entries are used. For an array the result has A's
        shape; for a PETSc ``Mat`` it is aligned with the values of ``getValuesCSR()``.
    lam, x : arrays of shape (N,) and (M,)
        The adjoint and the primal vectors.

    Returns
    -------
    ndarray
        Same length (or shape) as ``A.data``; duplicates of a COO matrix each get the value.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[2.0, 0.0], [1.0, 3.0]]))
    >>> pattern_cotangent(A, np.array([1.0, 2.0]), np.array([5.0, 7.0]))
    array([ 5., 10., 14.])
    """
    matrix = as_sparse(A, "A", aligned=True)
    refuse_complex(lam, "lam")
    refuse_complex(x, "x")
    lam = np.asarray(lam, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if lam.shape != (matrix.shape[0],) or x.shape != (matrix.shape[1],):
        raise ValueError(f"pattern_cotangent: A has shape {matrix.shape}, lam {lam.shape} "
                         f"and x {x.shape}")
    if isinstance(matrix, np.ndarray):
        return np.outer(lam, x)
    rows, cols = entry_coordinates(matrix)
    return entry_cotangent(lam, x, rows, cols)


def entry_cotangent(lam: np.ndarray, x: np.ndarray, rows: np.ndarray,
                    cols: np.ndarray) -> np.ndarray:
    """``λ_rows[k] x_cols[k]`` for each entry k: the cotangent of matrix values for ``λᵀAx``.

    The one formula behind :meth:`SparsityPattern.cotangent`, :func:`pattern_cotangent` and
    the distributed operators (where ``rows`` are local and ``cols`` index the owned and
    ghost entries of x).

    >>> import numpy as np
    >>> entry_cotangent(np.array([1.0, 2.0]), np.array([5.0, 7.0]), np.array([0, 1, 1]),
    ...                 np.array([0, 0, 1]))
    array([ 5., 10., 14.])
    """
    return lam[rows] * x[cols]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array

"""The map from element-matrix entries to the slots of the assembled CSR matrix.

Built once per mesh without a global sort of the E k² entries: the (element, local row) pairs
are sorted by global row (E k items), expanded to their k columns, sorted within each row by
scipy's per-row sort, and merged. Dirichlet rows and columns are left out and replaced by a
unit diagonal. What is kept is the slot of each entry, one integer per entry (E k² of them,
4 bytes each below 2³¹ slots): no matrix of values, whose data and indices would take three
times as much (the memory that limits a 3-D mesh of hexahedra, k = 24).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._matrices import index_dtype
from .pattern import SparsityPattern

__all__ = ["ElementSlots", "element_slots"]

#: Element entries handled at once by :class:`ElementSlots` (bounds its temporaries).
CHUNK_ENTRIES = 1 << 21


class ElementSlots:
    """``values = Σ_e s_e K_e`` placed in the CSR slots (a unit Dirichlet diagonal added),
    and its transpose.

    Parameters
    ----------
    slots : int array (E, k²)
        The slot of each entry of each element matrix (row-major), ``nnz`` for an entry
        dropped with a Dirichlet row or column.
    entries : array (k²,) or (E, k²)
        The reference element matrix's entries, or each element matrix's.
    diagonal : int array
        The slots of the unit Dirichlet diagonal.
    nnz : int
        The number of slots.

    Examples
    --------
    Two bars on three dofs:

    >>> import numpy as np
    >>> conn = np.array([[0, 1], [1, 2]])
    >>> pattern, slots, diagonal = element_slots(conn, 3, None)
    >>> assembly = ElementSlots(slots, np.array([1.0, -1.0, -1.0, 1.0]), diagonal,
    ...                         pattern.nnz)
    >>> assembly.values(np.array([1.0, 2.0]))
    array([ 1., -1., -1.,  3., -2., -2.,  2.])
    >>> assembly.element_sums(np.ones(7))     # Σ of each K_e's entries
    array([0., 0.])
    """

    def __init__(self, slots: np.ndarray, entries: np.ndarray, diagonal: np.ndarray,
                 nnz: int) -> None:
        self.slots, self.entries, self.diagonal = slots, entries, diagonal
        self.nnz = int(nnz)
        n_elements, kk = slots.shape
        self._chunk = max(1, CHUNK_ENTRIES // max(kk, 1))

    def _chunks(self) -> range:
        return range(0, self.slots.shape[0], self._chunk)

    def _entries(self, start: int) -> np.ndarray:
        if self.entries.ndim == 1:
            return self.entries
        return self.entries[start:start + self._chunk]

    def values(self, scales: np.ndarray) -> np.ndarray:
        """``Σ_e scales[e] K_e`` in the CSR slots (nnz,), 1 on the Dirichlet diagonal."""
        out = self.scaled_sum(scales)
        out[self.diagonal] = 1.0
        return out

    def scaled_sum(self, scales: np.ndarray) -> np.ndarray:
        """``Σ_e scales[e] K_e`` in the CSR slots (nnz,), without the Dirichlet diagonal."""
        out = np.zeros(self.nnz + 1)  # the last slot collects the dropped entries
        for start in self._chunks():
            stop = start + self._chunk
            weights = scales[start:stop, None] * self._entries(start)
            np.add.at(out, self.slots[start:stop].ravel(), weights.ravel())
        return out[:-1]

    def element_sums(self, values_bar: np.ndarray) -> np.ndarray:
        """The transpose of :meth:`scaled_sum`: ``Σ_ab (K_e)_ab v[slot(e, a, b)]`` per e."""
        padded = np.append(np.asarray(values_bar, dtype=np.float64), 0.0)
        out = np.empty(self.slots.shape[0])
        for start in self._chunks():
            stop = start + self._chunk
            gathered = padded[self.slots[start:stop]]
            entries = self._entries(start)
            out[start:stop] = gathered @ entries if entries.ndim == 1 \
                else np.einsum("ea,ea->e", gathered, entries)
        return out


def element_slots(conn: np.ndarray, n: int, free: np.ndarray | None
                  ) -> tuple[SparsityPattern, np.ndarray, np.ndarray]:
    """Pattern, the slot of every element entry, and the Dirichlet diagonal of ``Σ_e s_e K_e``.

    Parameters
    ----------
    conn : int array (E, k)
        Global dof of each local dof of each element.
    n : int
        Number of dofs N.
    free : bool array (N,) or None
        False at Dirichlet dofs: their rows and columns are dropped, a unit diagonal is put in.

    Returns
    -------
    pattern : SparsityPattern
    slots : int array (E, k²)
        The slot of entry ``(a, b)`` of element e at ``[e, a k + b]``; ``nnz`` where the
        entry is dropped (a Dirichlet row or column).
    diagonal : int array
        The slots of the unit diagonal put in at Dirichlet dofs (no element entry lands
        there).
    """
    E, k = conn.shape
    kk = k * k
    itype = index_dtype(n, E * kk)
    conn = conn.astype(itype, copy=False)
    flat = conn.ravel()
    pairs = np.argsort(flat, kind="stable").astype(itype)  # (e, a) pairs by global row
    if free is not None:
        pairs = pairs[free[flat[pairs]]]
    pair_rows = flat[pairs]
    cols = conn[pairs // k]  # (pairs, k): the columns of each pair's entries
    ids = pairs[:, None] * itype(k) + np.arange(k, dtype=itype)  # entry id (e k + a) k + b
    del pairs
    if free is None:
        counts = np.bincount(pair_rows, minlength=n) * k
        cols, ids = cols.ravel(), ids.ravel()
    else:
        keep = free[cols]
        counts = np.bincount(pair_rows, weights=keep.sum(axis=1), minlength=n).astype(np.int64)
        cols, ids = cols[keep], ids[keep]
        del keep
    del pair_rows
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    by_row = sp.csr_matrix((ids, cols, indptr.astype(itype)), shape=(n, n), copy=False)
    by_row.has_sorted_indices = False
    by_row.sort_indices()  # columns sorted within rows; entry ids permuted alongside
    cols, ids = by_row.indices, by_row.data
    del by_row

    first = np.ones(cols.size, dtype=bool)  # first entry of each (row, column) slot
    np.not_equal(cols[1:], cols[:-1], out=first[1:])
    first[indptr[:-1][counts > 0]] = True
    starts = np.flatnonzero(first)  # entry index where each merged slot starts
    del first
    merged_cols = cols[starts]
    del cols
    merged_indptr = np.searchsorted(starts, indptr)
    merged_counts = np.diff(merged_indptr)
    sizes = np.empty_like(starts)  # entries summed into each merged slot
    np.subtract(starts[1:], starts[:-1], out=sizes[:-1])
    sizes[-1:] = ids.size - starts[-1:]

    dirichlet = np.zeros(n, dtype=bool) if free is None else ~free
    final_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(merged_counts + dirichlet, out=final_indptr[1:])
    nnz = int(final_indptr[-1])
    indices = np.empty(nnz, dtype=itype)
    slot_type = index_dtype(nnz + 1, E * kk)
    if dirichlet.any():
        shift = final_indptr[:-1] - merged_indptr[:-1]  # Dirichlet diagonals inserted before
        merged_slot = np.arange(merged_cols.size, dtype=np.int64)
        merged_slot += np.repeat(shift, merged_counts)  # merged slot → final slot
        indices[merged_slot] = merged_cols
        merged_slot = merged_slot.astype(slot_type)
    else:
        indices[:] = merged_cols
        merged_slot = np.arange(merged_cols.size, dtype=slot_type)
    del merged_cols, merged_indptr, merged_counts, indptr, counts
    diagonal = final_indptr[:-1][dirichlet]
    indices[diagonal] = np.flatnonzero(dirichlet)
    pattern = SparsityPattern._trusted(final_indptr, indices, n)

    slots = np.full(E * kk, nnz, dtype=slot_type)  # dropped entries keep the extra slot
    slots[ids] = np.repeat(merged_slot, sizes)
    return pattern, slots.reshape(E, kk), diagonal

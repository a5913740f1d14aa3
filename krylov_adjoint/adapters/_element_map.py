"""The map from element-matrix entries to the slots of the assembled CSR matrix.

Built once per mesh without a global sort of the E k² entries: the (element, local row) pairs
are sorted by global row (E k items), expanded to their k columns, sorted within each row by
scipy's per-row sort, and merged. Dirichlet rows and columns are left out and replaced by a
unit diagonal.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._matrices import index_dtype
from .pattern import SparsityPattern

__all__ = ["element_value_map"]


def element_value_map(conn: np.ndarray, n: int, entries: np.ndarray, free: np.ndarray | None
                      ) -> tuple[SparsityPattern, sp.csr_matrix, np.ndarray]:
    """Pattern, value map G and offset with ``values = offset + G s`` for ``K = Σ_e s_e K_e``.

    Parameters
    ----------
    conn : int array (E, k)
        Global dof of each local dof of each element.
    n : int
        Number of dofs N.
    entries : array (k²,) or (E, k²)
        The entries of the reference element matrix, or of each element matrix, row-major.
    free : bool array (N,) or None
        False at Dirichlet dofs: their rows and columns are dropped, a unit diagonal is put in.

    Returns
    -------
    pattern : SparsityPattern
    G : csr_matrix (nnz, E)
        ``G[slot, e]`` sums the entries of ``K_e`` landing in ``slot``.
    offset : ndarray (nnz,)
        1 on the Dirichlet diagonal, 0 elsewhere.
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
    g_counts = np.zeros(nnz, dtype=np.int64)
    if dirichlet.any():
        shift = final_indptr[:-1] - merged_indptr[:-1]  # Dirichlet diagonals inserted before
        position = np.arange(merged_cols.size, dtype=np.int64)
        position += np.repeat(shift, merged_counts)  # merged slot → final slot
        indices[position] = merged_cols
        g_counts[position] = sizes
        del position
    else:
        indices[:] = merged_cols
        g_counts[:] = sizes
    diagonal = final_indptr[:-1][dirichlet]
    indices[diagonal] = np.flatnonzero(dirichlet)
    offset = np.zeros(nnz)
    offset[diagonal] = 1.0
    pattern = SparsityPattern._trusted(final_indptr, indices, n)

    g_indptr = np.zeros(nnz + 1, dtype=np.int64)
    np.cumsum(g_counts, out=g_indptr[1:])
    if entries.ndim == 2:
        data = entries.reshape(-1)[ids]
    elif kk & (kk - 1) == 0:  # k² a power of two (k = 2, 4, 8): bit operations
        data = entries[ids & itype(kk - 1)]
    else:
        data = entries[ids % itype(kk)]
    if kk & (kk - 1) == 0:
        ids >>= itype(kk.bit_length() - 1)  # the element of each entry
    else:
        ids //= itype(kk)
    G = sp.csr_matrix((data, ids, g_indptr.astype(itype)), shape=(nnz, E), copy=False)
    return pattern, G, offset

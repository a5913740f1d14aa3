"""Storage for GMRES's bases: rows allocated block by block as first needed, never copied."""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import dgemv, zgemv

from .._checks import readonly

__all__ = ["Rows"]

# Rows of the first block; each later block doubles the rows held, up to the limit.
_FIRST_BLOCK = 8

# Storage of at most this many float64 (8 MB) is allocated whole on first use: memory is
# then no concern, and one block saves the per-block calls. CPU time of 150 iterations of
# GMRES(30), unpreconditioned 2-D convection-diffusion, one BLAS thread, against the former
# storage grown by doubling with copies: N = 900, 4.4 ms (one block) or 6.0 ms (blocks)
# against 4.3 ms; N = 10⁴, 21 ms (one block) or 22 ms (blocks) against 22 ms; in blocks,
# N = 9·10⁴, 0.18 s against 0.23 s and N = 4.9·10⁵, 1.5 s against 2.2 s (no copies).
ALLOCATE_AT_ONCE = 1 << 20


class Rows:
    """Up to ``limit`` vectors of length ``n`` (the rows of a matrix), in blocks allocated
    as first needed and never moved.

    A preconditioned solve often converges in a few iterations of a long restart cycle, so
    large storage is not allocated for ``limit`` rows from the start (0.5 GB for GMRES(30)
    at 10⁶ unknowns, for both bases): blocks of 8, 8, 16, 32, ... rows are added, the total
    doubling, the last one cut at ``limit``. No block is ever copied into a larger one, so
    the memory held is at most ``limit`` rows, and exactly the rows of the blocks reached;
    the products with the first ``k`` rows take one BLAS call per block. Storage of up to
    :data:`ALLOCATE_AT_ONCE` numbers is allocated whole, as one block.

    Examples
    --------
    >>> import numpy as np
    >>> rows = Rows(20, 10**5)
    >>> for i in range(10):
    ...     np.copyto(rows.slot(i), float(i))
    >>> rows.allocated, [len(block) for block in rows.blocks]
    (16, [8, 8])
    >>> rows = Rows(20, 3)
    >>> for i in range(10):
    ...     np.copyto(rows.slot(i), float(i))
    >>> rows.allocated
    20
    >>> rows.dot(10, np.ones(3))
    array([ 0.,  3.,  6.,  9., 12., 15., 18., 21., 24., 27.])
    >>> rows.subtract_combination(3, np.array([1.0, 1.0, 1.0]), np.zeros(3))
    array([-3., -3., -3.])
    """

    def __init__(self, limit: int, n: int, dtype: type = np.float64) -> None:
        self.limit, self.n, self.dtype = limit, n, np.dtype(dtype)
        self.blocks: list[np.ndarray] = []
        self._readonly: list[np.ndarray] = []
        self._starts: list[int] = []  # index of each block's first row
        self.allocated = 0

    def _locate(self, i: int) -> tuple[int, int]:
        """``(block, row in block)`` of row ``i``."""
        if not 0 <= i < self.allocated:
            raise IndexError(f"row {i} is not allocated ({self.allocated} rows)")
        b = len(self._starts) - 1
        while self._starts[b] > i:
            b -= 1
        return b, i - self._starts[b]

    def slot(self, i: int) -> np.ndarray:
        """Row ``i`` as a writable view, allocating blocks up to it."""
        if not 0 <= i < self.limit:
            raise IndexError(f"row {i} is outside 0..{self.limit - 1}")
        while i >= self.allocated:
            if self.limit * self.n <= ALLOCATE_AT_ONCE:
                rows = self.limit
            else:
                rows = min(self.limit - self.allocated, max(_FIRST_BLOCK, self.allocated))
            block = np.empty((rows, self.n), dtype=self.dtype)
            self.blocks.append(block)
            self._readonly.append(readonly(block))
            self._starts.append(self.allocated)
            self.allocated += rows
        b, r = self._locate(i)
        return self.blocks[b][r]

    def row(self, i: int) -> np.ndarray:
        """Row ``i`` as a read-only view (for callbacks: no view to make per call)."""
        b, r = self._locate(i)
        return self._readonly[b][r]

    def _spans(self, k: int) -> list[tuple[np.ndarray, int, int]]:
        """``(block rows, first, last)``: the blocks covering rows ``0..k-1`` and where they
        sit in a coefficient vector of length ``k``."""
        if not 0 < k <= self.allocated:
            raise IndexError(f"rows up to {k - 1} requested, {self.allocated} allocated")
        spans = []
        for block, start in zip(self.blocks, self._starts, strict=True):
            if start >= k:
                break
            stop = min(k, start + len(block))
            spans.append((block[: stop - start], start, stop))
        return spans

    def dot(self, k: int, w: np.ndarray) -> np.ndarray:
        """``R[:k] @ w``, R the matrix of the rows (``conj(R[:k]) @ w`` for complex rows: the
        Hermitian inner products)."""
        if self.dtype.kind == "c":
            return np.concatenate([np.conj(rows @ np.conj(w)) for rows, _, _ in self._spans(k)])
        first = self.blocks[0]
        if k <= len(first):  # the common case, one product
            return first[:k] @ w
        return np.concatenate([rows @ w for rows, _, _ in self._spans(k)])

    def subtract_combination(self, k: int, coefficients: np.ndarray, w: np.ndarray, *,
                             in_place: bool = False) -> np.ndarray:
        """``w − coefficientsᵀ R[:k]``: a new array (``w`` is only read), or ``w`` updated in
        place with ``in_place=True``; one pass over each block and over the result."""
        first = self.blocks[0]
        if k <= len(first):  # the common case, one product
            return _gemv(-1.0, first[:k], coefficients, w, overwrite=in_place)
        out = w
        for index, (rows, first, last) in enumerate(self._spans(k)):
            out = _gemv(-1.0, rows, coefficients[first:last], out,
                        overwrite=in_place or index > 0)
        return out

    def add_combination(self, k: int, coefficients: np.ndarray, x: np.ndarray) -> None:
        """``x += coefficientsᵀ R[:k]`` in place, without a temporary vector."""
        for rows, first, last in self._spans(k):
            _gemv(1.0, rows, coefficients[first:last], x, overwrite=True)


def _gemv(alpha: float, rows: np.ndarray, coefficients: np.ndarray, y: np.ndarray, *,
          overwrite: bool) -> np.ndarray:
    """``y + alpha·rowsᵀ coefficients`` by BLAS, into ``y`` when ``overwrite`` (a contiguous
    vector of the library's, of the rows' dtype), else into a new vector."""
    gemv = zgemv if rows.dtype.kind == "c" else dgemv
    out = gemv(alpha, rows.T, coefficients, beta=1.0, y=y, overwrite_y=int(overwrite))
    if overwrite and out is not y:  # pragma: no cover - y is contiguous float64 here
        np.copyto(y, out)
        return y
    return out

"""A sparsity pattern given by a framework user: a SparsityPattern, or rows and columns."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..adapters.pattern import SparsityPattern
from ..errors import InputError

__all__ = ["EntryPattern"]


class EntryPattern:
    """Entries ``(rows[k], cols[k])`` of an N × N matrix, in the user's order.

    The user's values ``v`` (one per entry, repeated positions summed) give the matrix on
    :attr:`pattern` (canonical CSR) by :meth:`matrix`.

    Parameters
    ----------
    pattern : SparsityPattern or (rows, cols)
        A :class:`~krylov_adjoint.adapters.SparsityPattern` (values in its CSR order), or two
        integer arrays of the same length.
    n : int
        N.

    Examples
    --------
    >>> import numpy as np
    >>> entries = EntryPattern((np.array([1, 0, 1]), np.array([1, 0, 0])), 2)
    >>> entries.matrix(np.array([3.0, 1.0, 2.0])).toarray()
    array([[1., 0.],
           [2., 3.]])
    """

    def __init__(self, pattern: Any, n: int) -> None:
        if isinstance(pattern, SparsityPattern):
            if pattern.n != n:
                raise InputError("pattern", f"expected an N × N pattern with N = {n}, got "
                                            f"{pattern.shape}")
            self.pattern = pattern
            self.rows, self.cols = np.asarray(pattern.rows), np.asarray(pattern.indices)
            self.slots: np.ndarray | None = None
            return
        try:
            rows, cols = (np.asarray(a) for a in pattern)
        except (TypeError, ValueError) as exc:
            raise InputError("pattern", "expected a SparsityPattern or (rows, cols), got "
                                        f"{type(pattern).__name__}") from exc
        if rows.ndim != 1 or rows.shape != cols.shape or rows.dtype.kind not in "iu" \
                or cols.dtype.kind not in "iu":
            raise InputError("pattern", "rows and cols must be 1-D integer arrays of one "
                                        f"length, got {rows.dtype}{rows.shape} and "
                                        f"{cols.dtype}{cols.shape}")
        if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= n):
            raise InputError("pattern", f"rows and cols must lie in [0, {n})")
        self.pattern, slots = SparsityPattern.from_coordinates(rows, cols, n)
        self.rows, self.cols = rows, cols
        self.slots = None if np.array_equal(slots, np.arange(rows.size)) else slots

    @property
    def size(self) -> int:
        """The number of entries (of user values)."""
        return int(self.rows.size)

    def pattern_values(self, values: np.ndarray) -> np.ndarray:
        """The user's values summed onto the canonical pattern."""
        if self.slots is None:
            return values
        return np.bincount(self.slots, values, minlength=self.pattern.nnz)

    def matrix(self, values: np.ndarray) -> Any:
        """The CSR matrix of the user's values."""
        return self.pattern.matrix(self.pattern_values(values))

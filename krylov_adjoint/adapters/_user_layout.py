"""The layout of a user's assembled matrices: which entry of ``A.data`` goes where."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CallbackError
from .pattern import SparsityPattern, entry_coordinates

__all__ = ["UserLayout"]


class UserLayout:
    """The layout of the user's assembled matrices: which entry of ``A.data`` goes where.

    Records the index arrays of the first assembly; later assemblies must repeat them.
    """

    def __init__(self, A: Any) -> None:
        self.format = "dense" if isinstance(A, np.ndarray) else A.format
        self.shape = A.shape
        self.index_arrays = [(label, np.array(a, copy=True))
                             for label, a in _index_arrays(A).items()]
        rows, cols = entry_coordinates(A)
        self.pattern, slots = SparsityPattern.from_coordinates(rows, cols, A.shape[0])
        identity = slots.size == self.pattern.nnz and np.array_equal(
            slots, np.arange(slots.size))
        self.slots = None if identity else slots

    def check(self, A: Any, name: str) -> None:
        fmt = "dense" if isinstance(A, np.ndarray) else A.format
        if fmt != self.format or A.shape != self.shape:
            raise CallbackError(name, f"returned a {fmt} matrix of shape {A.shape}, but the "
                                f"first assembly gave a {self.format} matrix of shape "
                                f"{self.shape}: the format and the pattern must stay fixed")
        for (label, ref), new in zip(self.index_arrays, _index_arrays(A).values(), strict=True):
            if ref is new or np.array_equal(ref, new):
                continue
            raise CallbackError(name, _pattern_change_message(label, ref, new))

    def data(self, A: Any) -> np.ndarray:
        return A.ravel() if isinstance(A, np.ndarray) else A.data

    def to_values(self, data: np.ndarray) -> np.ndarray:
        """User entries → values on the canonical pattern (duplicates summed)."""
        if self.slots is None:
            return data
        return np.bincount(self.slots, weights=data, minlength=self.pattern.nnz)

    def to_entries(self, values_bar: np.ndarray) -> np.ndarray:
        """Cotangent on the canonical pattern → cotangent of each user entry."""
        out = values_bar if self.slots is None else values_bar[self.slots]
        return out.reshape(self.shape) if self.format == "dense" else out


def _index_arrays(A: Any) -> dict[str, np.ndarray]:
    if isinstance(A, np.ndarray):
        return {}
    if A.format == "coo":
        return {"row": A.row, "col": A.col}
    return {"indptr": A.indptr, "indices": A.indices}


def _pattern_change_message(label: str, ref: np.ndarray, new: np.ndarray) -> str:
    if ref.shape != new.shape:
        where = f"{label} has length {new.size} instead of {ref.size}"
    else:
        where = f"{label} first differs at position {int(np.flatnonzero(ref != new)[0])}"
    return ("the sparsity pattern of A(θ) changed since the first assembly "
            f"({where}). The pattern must be fixed: keep entries that vanish at some θ as "
            "explicit zeros (scipy's A + B and eliminate_zeros() drop them), or assemble "
            "through a fixed CSR structure")

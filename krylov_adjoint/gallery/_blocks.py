"""Parameters shared by rectangular blocks of cells."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["BlockMap", "as_block"]


def as_block(block: int | tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Validate a block size (an int for every axis, or one int per axis) against a grid."""
    sizes = (block,) * len(shape) if np.isscalar(block) else tuple(block)  # type: ignore[arg-type]
    if len(sizes) != len(shape):
        raise InputError("block", f"expected {len(shape)} block sizes for grid {shape}, "
                         f"got {sizes}")
    out = []
    for b, n in zip(sizes, shape, strict=True):
        if int(b) != b or not 1 <= int(b) <= n:
            raise InputError("block", f"block sizes must be integers in [1, n] for grid {shape}, "
                             f"got {sizes}")
        out.append(int(b))
    return tuple(out)


class BlockMap:
    """The map from cells to the parameter of their block.

    Blocks of ``block[a]`` cells along each axis tile the grid from its first cell; the last
    block along an axis is smaller when ``block[a]`` does not divide ``n_a``. Blocks are numbered
    in C order over the block grid ``ceil(n_a / block[a])``.

    Examples
    --------
    >>> m = BlockMap((3, 4), (2, 2))
    >>> m.block_grid, m.n_params
    ((2, 2), 4)
    >>> m.index.reshape(3, 4)
    array([[0, 0, 1, 1],
           [0, 0, 1, 1],
           [2, 2, 3, 3]])
    """

    def __init__(self, shape: tuple[int, ...], block: int | tuple[int, ...] = 1) -> None:
        self.shape = tuple(shape)
        self.block = as_block(block, self.shape)
        self.block_grid = tuple(-(-n // b) for n, b in zip(self.shape, self.block, strict=True))
        self.n_params = int(np.prod(self.block_grid))
        self.is_identity = all(b == 1 for b in self.block)
        coords = np.ogrid[tuple(slice(0, n) for n in self.shape)]
        block_coords = tuple(c // b for c, b in zip(coords, self.block, strict=True))
        index = np.ravel_multi_index(np.broadcast_arrays(*block_coords), self.block_grid)
        self.index = index.reshape(-1)

    def expand(self, theta: np.ndarray) -> np.ndarray:
        """Per-cell values (flat, length N) from per-block values (length P)."""
        return np.asarray(theta) if self.is_identity else np.asarray(theta)[self.index]

    def reduce(self, per_cell: np.ndarray) -> np.ndarray:
        """Per-block sums (length P) of per-cell values: the transpose of :meth:`expand`."""
        flat = np.asarray(per_cell).reshape(-1)
        if self.is_identity:
            return flat
        return np.bincount(self.index, weights=flat, minlength=self.n_params)

    def average(self, per_cell: np.ndarray) -> np.ndarray:
        """Per-block means of per-cell values."""
        counts = np.bincount(self.index, minlength=self.n_params)
        return self.reduce(per_cell) / counts

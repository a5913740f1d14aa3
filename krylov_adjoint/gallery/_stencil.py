"""Two-point flux operators on a cell grid, applied matrix-free with shifted slices.

A cell grid of shape ``(n_0, ..., n_{d-1})`` stores one unknown per cell, flattened in C order.
Along each axis, neighbouring cells ``l`` and ``r = l + e_a`` share an interior face; the first
and last layers of cells along each axis also have a boundary face. A two-point flux operator
couples each cell only to its ``2d`` face neighbours, so it is a matrix with at most ``2d + 1``
diagonals, which this module applies, transposes and assembles without a loop over cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["FluxStencil", "interior_slices", "boundary_slices", "face_cell_indices"]

Index = tuple[slice, ...]


def interior_slices(ndim: int, axis: int) -> tuple[Index, Index]:
    """Index tuples selecting the left and right cells of every interior face along ``axis``."""
    left = [slice(None)] * ndim
    right = [slice(None)] * ndim
    left[axis] = slice(None, -1)
    right[axis] = slice(1, None)
    return tuple(left), tuple(right)


def boundary_slices(ndim: int, axis: int) -> tuple[Index, Index]:
    """Index tuples selecting the first and last layers of cells along ``axis`` (kept 2-D+)."""
    first = [slice(None)] * ndim
    last = [slice(None)] * ndim
    first[axis] = slice(0, 1)
    last[axis] = slice(-1, None)
    return tuple(first), tuple(last)


def face_cell_indices(shape: tuple[int, ...], axis: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat cell indices ``(left, right, first, last)`` of the faces along ``axis``.

    ``left``/``right`` have the shape of the interior face array of that axis, ``first``/``last``
    the shape of its boundary layers, so that they line up with face coefficients.
    """
    cells = np.arange(int(np.prod(shape))).reshape(shape)
    left, right = interior_slices(len(shape), axis)
    first, last = boundary_slices(len(shape), axis)
    return cells[left], cells[right], cells[first], cells[last]


class FluxStencil:
    """A matrix with at most ``2d + 1`` diagonals on a ``d``-dimensional cell grid.

    Row ``c`` couples cell ``c`` to itself and to its face neighbours ``c ± e_a``.

    Parameters
    ----------
    shape : tuple of int
        The cell grid (every ``n_a >= 2``).
    diagonal : ndarray
        ``A[c, c]``, of shape ``shape``.
    upper : sequence of ndarray
        For each axis ``a``, ``A[c, c + e_a]`` on the interior faces (shape ``shape`` with
        ``n_a - 1`` along ``a``).
    lower : sequence of ndarray
        For each axis ``a``, ``A[c + e_a, c]`` on the same faces.

    Examples
    --------
    The 1-D matrix ``tridiag(-1, 2, -1)``:

    >>> import numpy as np
    >>> S = FluxStencil((3,), np.full(3, 2.0), [np.full(2, -1.0)], [np.full(2, -1.0)])
    >>> S.assemble().toarray()
    array([[ 2., -1.,  0.],
           [-1.,  2., -1.],
           [ 0., -1.,  2.]])
    """

    def __init__(self, shape: tuple[int, ...], diagonal: np.ndarray,
                 upper: Sequence[np.ndarray], lower: Sequence[np.ndarray]) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.size = int(np.prod(self.shape))
        self.diagonal = diagonal
        self.upper = tuple(upper)
        self.lower = tuple(lower)

    @classmethod
    def from_fluxes(cls, shape: tuple[int, ...], alpha: Sequence[np.ndarray],
                    beta: Sequence[np.ndarray], low: Sequence[np.ndarray | float],
                    high: Sequence[np.ndarray | float]) -> FluxStencil:
        """The conservative operator with face flux ``F = α u_l − β u_r``.

        Each interior face adds ``F`` to row ``l`` and ``−F`` to row ``r``; the boundary faces of
        the first and last layers along each axis add ``low`` and ``high`` to the diagonal.
        ``alpha is beta`` gives a symmetric operator.
        """
        ndim = len(shape)
        diagonal = np.zeros(shape)
        for a in range(ndim):
            left, right = interior_slices(ndim, a)
            first, last = boundary_slices(ndim, a)
            diagonal[left] += alpha[a]
            diagonal[right] += beta[a]
            diagonal[first] += low[a]
            diagonal[last] += high[a]
        upper = [-b for b in beta]
        lower = upper if alpha is beta else [-a for a in alpha]
        return cls(shape, diagonal, upper, lower)

    def __add__(self, other: FluxStencil) -> FluxStencil:
        if not isinstance(other, FluxStencil):
            return NotImplemented
        if other.shape != self.shape:
            raise ValueError(f"cannot add stencils on grids {self.shape} and {other.shape}")
        return FluxStencil(self.shape, self.diagonal + other.diagonal,
                           [u + v for u, v in zip(self.upper, other.upper, strict=True)],
                           [u + v for u, v in zip(self.lower, other.lower, strict=True)])

    def plus_identity(self, scale: float = 1.0) -> FluxStencil:
        """``scale·I + self``."""
        return FluxStencil(self.shape, self.diagonal + scale, self.upper, self.lower)

    @property
    def T(self) -> FluxStencil:
        """The transposed stencil (upper and lower couplings swapped)."""
        return FluxStencil(self.shape, self.diagonal, self.lower, self.upper)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``A @ x`` for a flat vector ``x`` of length ``prod(shape)``; ``x`` is not modified."""
        U = np.asarray(x).reshape(self.shape)
        Y = self.diagonal * U
        ndim = len(self.shape)
        for a in range(ndim):
            left, right = interior_slices(ndim, a)
            Y[left] += self.upper[a] * U[right]
            Y[right] += self.lower[a] * U[left]
        return Y.reshape(-1)

    def apply_transpose(self, y: np.ndarray) -> np.ndarray:
        """``A.T @ y``, by the transposed stencil (no matrix is formed)."""
        return self.T.apply(y)

    def assemble(self) -> sp.csr_matrix:
        """The matrix as CSR float64, assembled from its diagonals."""
        n = self.size
        strides = np.cumprod((self.shape[1:] + (1,))[::-1])[::-1]
        diagonals = [np.asarray(self.diagonal, dtype=np.float64).reshape(-1)]
        offsets = [0]
        ndim = len(self.shape)
        for a in range(ndim):
            left, _ = interior_slices(ndim, a)
            stride = int(strides[a])
            for values, sign in ((self.upper[a], 1), (self.lower[a], -1)):
                padded = np.zeros(self.shape)
                padded[left] = values
                diagonals.append(padded.reshape(-1)[: n - stride])
                offsets.append(sign * stride)
        A = sp.diags_array(diagonals, offsets=offsets, shape=(n, n))
        return sp.csr_matrix(A.tocsr())

"""A (2d+1)-point operator on this rank's block of a :class:`StructuredGrid`, applied to ghosts.

The distributed counterpart of the serial gallery's ``FluxStencil``: row ``c`` couples cell
``c`` to its face neighbours ``c ± e_a``. Coefficients live on the faces *seen* by this rank
along each axis: the faces of the box that is owned in every other axis and ghosted along
``a`` (every face of an owned cell, including those shared with a neighbouring rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from .dmda import StructuredGrid

__all__ = ["LocalStencil", "FaceIndex", "face_box", "along"]

Index = tuple[slice, ...]


def along(ndim: int, axis: int, part: slice) -> Index:
    """The index tuple taking ``part`` along ``axis`` and everything along the others."""
    index = [slice(None)] * ndim
    index[axis] = part
    return tuple(index)


def face_box(grid: StructuredGrid, axis: int) -> Index:
    """Index of the ghosted box keeping owned cells in every axis but ``axis`` (ghosted)."""
    index = list(grid.interior)
    index[axis] = slice(None)
    return tuple(index)


class FaceIndex:
    """Where the owned cells sit among the cells and faces of the box along one axis."""

    def __init__(self, grid: StructuredGrid, axis: int) -> None:
        nd = grid.ndim
        self.axis = axis
        self.box = face_box(grid, axis)
        off = grid.interior[axis].start               # 1 when a ghost layer lies below
        n = grid.owned_shape[axis]
        m = grid.ghosted_shape[axis]                  # cells of the box along the axis
        n_right = n if off + n <= m - 1 else n - 1    # owned cells with a face above
        first_left = 1 - off                          # first owned cell with a face below
        self.right_cells = along(nd, axis, slice(0, n_right))        # in the owned box
        self.right_faces = along(nd, axis, slice(off, off + n_right))
        self.left_cells = along(nd, axis, slice(first_left, n))
        self.left_faces = along(nd, axis, slice(first_left + off - 1, n + off - 1))
        # neighbours of those owned cells, in the face box
        self.right_nbrs = along(nd, axis, slice(off + 1, off + 1 + n_right))
        self.left_nbrs = along(nd, axis, slice(first_left + off - 1, n + off - 1))
        self.owned = along(nd, axis, slice(off, off + n))
        self.lower = along(nd, axis, slice(None, -1))  # left cell of every face of the box
        self.upper = along(nd, axis, slice(1, None))   # right cell of every face
        self.first = along(nd, axis, slice(0, 1))      # boundary layers of the owned box
        self.last = along(nd, axis, slice(-1, None))


class LocalStencil:
    """This rank's rows of a (2d+1)-point operator.

    Parameters
    ----------
    grid : StructuredGrid
    diagonal : ndarray, shape ``grid.owned_shape``
        ``A[c, c]`` of the owned cells.
    upper : sequence of ndarray
        For each axis a, ``A[l, l + e_a]`` on every face of the face box (its shape is the
        face box's with one fewer entry along a; face f lies between box cells f and f+1).
    lower : sequence of ndarray
        ``A[l + e_a, l]`` on the same faces.

    Examples
    --------
    The 1-D matrix ``tridiag(-1, 2, -1)`` on one rank:

    >>> import numpy as np
    >>> from krylov_adjoint.backends.petsc import StructuredGrid
    >>> grid = StructuredGrid((3,))
    >>> S = LocalStencil(grid, np.full(3, 2.0), [np.full(2, -1.0)], [np.full(2, -1.0)])
    >>> S.apply(np.ones(3))
    array([1., 0., 1.])
    """

    def __init__(self, grid: StructuredGrid, diagonal: np.ndarray,
                 upper: Sequence[np.ndarray], lower: Sequence[np.ndarray]) -> None:
        self.grid = grid
        self.diagonal = np.asarray(diagonal, dtype=np.float64).reshape(grid.owned_shape)
        self.upper = tuple(upper)
        self.lower = tuple(lower)
        self.faces = tuple(FaceIndex(grid, a) for a in range(grid.ndim))

    @classmethod
    def from_global(cls, grid: StructuredGrid, diagonal: np.ndarray,
                    upper: Sequence[np.ndarray], lower: Sequence[np.ndarray]) -> LocalStencil:
        """This rank's part of a stencil given on the whole grid (serial ``FluxStencil``).

        ``diagonal`` has the grid's shape and ``upper[a]``/``lower[a]`` one fewer entry along
        a; costs O(N) memory on every rank, meant for building reference problems.
        """
        local_upper, local_lower = [], []
        for a in range(grid.ndim):
            start = grid.ghost_start[a]
            index = list(grid.owned)
            index[a] = slice(start, start + grid.ghosted_shape[a] - 1)
            local_upper.append(np.ascontiguousarray(np.asarray(upper[a])[tuple(index)]))
            local_lower.append(np.ascontiguousarray(np.asarray(lower[a])[tuple(index)]))
        return cls(grid, np.asarray(diagonal)[grid.owned], local_upper, local_lower)

    @classmethod
    def from_fluxes(cls, grid: StructuredGrid, alpha: Sequence[np.ndarray],
                    beta: Sequence[np.ndarray], low: Sequence[np.ndarray | None],
                    high: Sequence[np.ndarray | None]) -> LocalStencil:
        """The conservative operator with face flux ``F = α u_l − β u_r`` (face-box faces).

        ``low[a]``/``high[a]`` are added to the diagonal of the first/last layer of owned
        cells along a, for the ranks touching the domain boundary (None elsewhere).
        """
        grid_nd = grid.ndim
        diagonal = np.zeros(grid.owned_shape)
        for a in range(grid_nd):
            f = FaceIndex(grid, a)
            diagonal[f.right_cells] += alpha[a][f.right_faces]
            diagonal[f.left_cells] += beta[a][f.left_faces]
            if grid.at_low[a] and low[a] is not None:
                diagonal[f.first] += low[a]
            if grid.at_high[a] and high[a] is not None:
                diagonal[f.last] += high[a]
        upper = [-np.asarray(b) for b in beta]
        lower = upper if alpha is beta else [-np.asarray(a) for a in alpha]
        return cls(grid, diagonal, upper, lower)

    def __add__(self, other: LocalStencil) -> LocalStencil:
        if not isinstance(other, LocalStencil):
            return NotImplemented
        return LocalStencil(self.grid, self.diagonal + other.diagonal,
                            [u + v for u, v in zip(self.upper, other.upper, strict=True)],
                            [u + v for u, v in zip(self.lower, other.lower, strict=True)])

    @property
    def T(self) -> LocalStencil:
        """The transposed operator's rows (upper and lower couplings swapped).

        Row ``c`` of Aᵀ is column ``c`` of A, whose entries live on the same faces.
        """
        return LocalStencil(self.grid, self.diagonal, self.lower, self.upper)

    def apply(self, ghosted: np.ndarray) -> np.ndarray:
        """This rank's rows of ``A @ x``, from x on the ghosted box (flat, local order)."""
        X = np.asarray(ghosted).reshape(self.grid.ghosted_shape)
        Y = self.diagonal * X[self.grid.interior]
        for a, f in enumerate(self.faces):
            E = X[f.box]
            Y[f.right_cells] += self.upper[a][f.right_faces] * E[f.right_nbrs]
            Y[f.left_cells] += self.lower[a][f.left_faces] * E[f.left_nbrs]
        return Y.reshape(-1)

    def apply_transpose(self, ghosted: np.ndarray) -> np.ndarray:
        """This rank's rows of ``Aᵀ @ y``, from y on the ghosted box."""
        return self.T.apply(ghosted)

    def rows(self) -> sp.csr_matrix:
        """This rank's rows as CSR (n_local × N) with PETSc's global column indices."""
        grid = self.grid
        n_local = int(np.prod(grid.owned_shape))
        local = np.arange(n_local).reshape(grid.owned_shape)
        glob = grid.global_indices()
        rows = [local.reshape(-1)]
        cols = [glob[grid.interior].reshape(-1)]
        vals = [self.diagonal.reshape(-1)]
        for a, f in enumerate(self.faces):
            G = glob[f.box]
            for cells, coeff, faces, nbrs in ((f.right_cells, self.upper[a], f.right_faces,
                                               f.right_nbrs),
                                              (f.left_cells, self.lower[a], f.left_faces,
                                               f.left_nbrs)):
                rows.append(local[cells].reshape(-1))
                cols.append(G[nbrs].reshape(-1))
                vals.append(np.broadcast_to(coeff[faces], local[cells].shape).reshape(-1))
        matrix = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                       np.concatenate(cols))),
                               shape=(n_local, grid.layout.size))
        return matrix.tocsr()

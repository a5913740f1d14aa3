"""A structured cell grid on a PETSc DMDA, with ghost exchange for matrix-free stencils.

Axis order follows the serial gallery: a grid of shape ``(n0, n1[, n2])`` stores cells in C
order, axis 0 slowest. The DMDA is created with its dimensions reversed (its fastest index
``i`` is axis −1), so that PETSc's natural ordering *is* the serial ordering and each rank's
owned block is a C-ordered box ``owned_shape``. Ghosted arrays are the box grown by the stencil
width towards every neighbouring rank (not beyond the domain).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._import import petsc
from .layout import Layout, as_mpi_comm

__all__ = ["StructuredGrid"]


class StructuredGrid:
    """A distributed ``d``-dimensional cell grid (d = 1, 2, 3) with one unknown per cell.

    Parameters
    ----------
    shape : tuple of int
        Cells along each axis, serial order (axis 0 slowest).
    comm : communicator, optional
    proc_sizes : tuple of int, optional
        Ranks along each axis (serial order); PETSc decides by default.
    stencil_width : int
        Ghost layers exchanged (1 for a 5-/7-point stencil).
    box : bool
        Exchange corner ghosts too (a box stencil); the default star stencil only fills face
        neighbours (other ghost entries of the arrays are zero).

    Attributes
    ----------
    da : petsc4py.PETSc.DMDA
    layout : Layout
        The layout of cell vectors (PETSc's ordering: rank blocks one after another).
    owned : tuple of slice
        This rank's cells along each axis, in global cell indices.
    owned_shape, ghosted_shape : tuple of int
    interior : tuple of slice
        Where the owned box sits inside the ghosted box.
    at_low, at_high : tuple of bool
        Whether the owned box touches the domain's low/high boundary along each axis.

    Examples
    --------
    >>> from krylov_adjoint.backends.petsc import StructuredGrid
    >>> grid = StructuredGrid((4, 3))     # one rank: owns everything, no ghosts
    >>> grid.owned_shape, grid.ghosted_shape, grid.layout.size
    ((4, 3), (4, 3), 12)
    """

    def __init__(self, shape: tuple[int, ...], *, comm: Any = None,
                 proc_sizes: tuple[int, ...] | None = None, stencil_width: int = 1,
                 box: bool = False) -> None:
        PETSc = petsc()
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        if not 1 <= self.ndim <= 3 or min(self.shape) < 1:
            raise ValueError(f"shape must have 1 to 3 positive sizes, got {shape!r}")
        self.comm = as_mpi_comm(comm)
        stencil = PETSc.DMDA.StencilType.BOX if box else PETSc.DMDA.StencilType.STAR
        da = PETSc.DMDA().create(
            dim=self.ndim, dof=1, sizes=self.shape[::-1],
            proc_sizes=None if proc_sizes is None else tuple(proc_sizes)[::-1],
            stencil_type=stencil, stencil_width=int(stencil_width), comm=self.comm)
        da.setUp()
        self.da = da
        ranges = da.getRanges()[::-1]
        ghost = da.getGhostRanges()[::-1]
        self.owned = tuple(slice(int(a), int(b)) for a, b in ranges)
        self.owned_shape = tuple(int(b - a) for a, b in ranges)
        self.ghosted_shape = tuple(int(b - a) for a, b in ghost)
        self.interior = tuple(slice(int(a - ga), int(a - ga + (b - a)))
                              for (a, b), (ga, _) in zip(ranges, ghost, strict=True))
        self.ghost_start = tuple(int(ga) for ga, _ in ghost)
        self.at_low = tuple(int(a) == 0 for a, _ in ranges)
        self.at_high = tuple(int(b) == n for (_, b), n in zip(ranges, self.shape, strict=True))
        probe = da.createGlobalVec()
        self.layout = Layout.of_vec(probe)
        probe.destroy()
        self._global_work: Any = None
        self._local: dict[str, Any] = {}

    # -- the Halo protocol ------------------------------------------------------------------
    def exchange(self, vec: Any, slot: str) -> np.ndarray:
        """Collective: the ghosted box of a cell vector, as a read-only array.

        ``slot`` names the local work vector kept for it, so that several ghosted vectors
        (x, λ, θ ...) can be alive at once; the array stays valid until the next exchange
        into the same slot.
        """
        local = self._local.get(slot)
        if local is None:
            local = self._local[slot] = self.da.createLocalVec()
        self.da.globalToLocal(vec, local)
        out = local.getArray(readonly=True).reshape(self.ghosted_shape)
        return out

    def exchange_array(self, owned: np.ndarray, slot: str) -> np.ndarray:
        """Collective: like :meth:`exchange`, from this rank's owned values as an array."""
        if self._global_work is None:
            self._global_work = self.da.createGlobalVec()
        self._global_work.setArray(np.ascontiguousarray(owned, dtype=np.float64).reshape(-1))
        return self.exchange(self._global_work, slot)

    # -- orderings -------------------------------------------------------------------------
    def natural_indices(self) -> np.ndarray:
        """The serial (C-order) cell index of each owned cell, in local order."""
        coords = np.ix_(*(np.arange(s.start, s.stop) for s in self.owned))
        return np.ravel_multi_index(coords, self.shape).reshape(-1)

    def global_indices(self) -> np.ndarray:
        """PETSc's global index of every cell of the ghosted box (shape ``ghosted_shape``).

        Entries not exchanged by a star stencil (box corners) are −1.
        """
        indices = np.asarray(self.da.getLGMap().getIndices())
        return indices.reshape(self.ghosted_shape)

    def local_part(self, full: np.ndarray) -> np.ndarray:
        """This rank's owned values (local order) of a serial-ordered global cell array."""
        return np.ascontiguousarray(np.asarray(full).reshape(self.shape)[self.owned]).reshape(-1)

    def gather(self, local: np.ndarray, root: int | None = 0) -> np.ndarray | None:
        """Collective: the serial-ordered global array from every rank's owned values."""
        values = self.layout.gather(local, root)
        natural = self.layout.gather(self.natural_indices().astype(np.float64), root)
        if values is None or natural is None:
            return None
        out = np.empty(self.layout.size)
        out[natural.astype(np.int64)] = values
        return out

    def coordinates(self, ghosted: bool = False) -> list[np.ndarray]:
        """Broadcastable cell-centre coordinates of the owned (or ghosted) box, unit domain."""
        starts = self.ghost_start if ghosted else tuple(s.start for s in self.owned)
        sizes = self.ghosted_shape if ghosted else self.owned_shape
        out = []
        for a, (start, size, n) in enumerate(zip(starts, sizes, self.shape, strict=True)):
            x = (np.arange(start, start + size) + 0.5) / n
            out.append(x.reshape([size if b == a else 1 for b in range(self.ndim)]))
        return out

    def create_vec(self) -> Any:
        """A new (zeroed) global cell vector."""
        vec = self.da.createGlobalVec()
        vec.set(0.0)
        return vec

    def destroy(self) -> None:
        """Free the PETSc objects."""
        for local in self._local.values():
            local.destroy()
        self._local = {}
        if self._global_work is not None:
            self._global_work.destroy()
        self.da.destroy()

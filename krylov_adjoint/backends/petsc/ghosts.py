"""Owned entries plus ghosts: the local view a rank needs of a distributed vector."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._import import mpi, petsc
from .layout import Layout

__all__ = ["GhostedIndices"]


class GhostedIndices:
    """The owned block of a distributed vector followed by some other ranks' entries.

    Built once (collectively) from the global indices a rank reads; each :meth:`gather`
    is one PETSc ``VecScatter`` of the ghosts (the forward scatter ``MatMult`` of an MPIAIJ
    matrix performs for its off-diagonal block), and each :meth:`add` the reverse scatter
    with ``ADD_VALUES`` (contributions to other ranks' entries summed where they are owned).

    Parameters
    ----------
    layout : Layout
        The vector's layout.
    indices : array of int
        Global indices this rank reads (owned ones are allowed and ignored).

    Attributes
    ----------
    ghosts : ndarray of int
        The sorted, unique global indices not owned by this rank.
    size : int
        ``layout.local_size + ghosts.size``, the length of the local view.
    anywhere : bool
        True when some rank has ghosts (the same on every rank).
    """

    def __init__(self, layout: Layout, indices: Any) -> None:
        PETSc = petsc()
        self.layout = layout
        indices = np.asarray(indices, dtype=np.int64).ravel()
        outside = (indices < layout.start) | (indices >= layout.stop)
        self.ghosts = np.unique(indices[outside])
        self.size = layout.local_size + self.ghosts.size
        self.anywhere = bool(layout.comm.allreduce(int(self.ghosts.size), op=mpi().SUM))
        self._template = layout.create_vec()
        self._local = PETSc.Vec().createSeq(self.ghosts.size, comm=PETSc.COMM_SELF)
        index_set = PETSc.IS().createGeneral(self.ghosts.astype(PETSc.IntType),
                                             comm=PETSc.COMM_SELF)
        self._scatter = PETSc.Scatter().create(self._template, index_set, self._local, None)
        index_set.destroy()

    def local_index(self, indices: Any) -> np.ndarray:
        """Positions of global ``indices`` in the local view (owned first, then ghosts)."""
        indices = np.asarray(indices, dtype=np.int64)
        layout = self.layout
        owned = (indices >= layout.start) & (indices < layout.stop)
        out = np.where(owned, indices - layout.start, 0)
        if self.ghosts.size:
            position = np.searchsorted(self.ghosts, np.where(owned, self.ghosts[0], indices))
            out = np.where(owned, out, layout.local_size + position)
        return out

    def gather(self, vec: Any) -> np.ndarray:
        """Collective: ``[owned entries of vec, its ghost entries]`` as a new array."""
        PETSc = petsc()
        self._scatter.scatter(vec, self._local, PETSc.InsertMode.INSERT_VALUES,
                              PETSc.ScatterMode.FORWARD)
        return np.concatenate([vec.getArray(readonly=True),
                               self._local.getArray(readonly=True)])

    def add(self, local: np.ndarray, out: Any) -> None:
        """Collective: ``out`` = owned part of ``local`` plus every rank's ghost parts summed."""
        PETSc = petsc()
        n = self.layout.local_size
        out.setArray(local[:n])
        self._local.setArray(local[n:])
        self._scatter.scatter(self._local, out, PETSc.InsertMode.ADD_VALUES,
                              PETSc.ScatterMode.REVERSE)

    def destroy(self) -> None:
        """Free the PETSc objects (collective)."""
        for obj in (self._scatter, self._local, self._template):
            obj.destroy()

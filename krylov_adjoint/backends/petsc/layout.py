"""Ownership of a distributed vector: which contiguous block of indices each rank owns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._import import mpi, petsc
from .collective import ErrorGuard

__all__ = ["Layout", "as_mpi_comm"]


def as_mpi_comm(comm: Any = None) -> Any:
    """An mpi4py communicator from None (``COMM_WORLD``), an mpi4py or a petsc4py one."""
    MPI = mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if isinstance(comm, MPI.Comm):
        return comm
    tompi4py = getattr(comm, "tompi4py", None)
    if tompi4py is not None:
        return tompi4py()
    raise TypeError(f"comm must be an mpi4py or petsc4py communicator, got {type(comm).__name__}")


@dataclass(frozen=True)
class Layout:
    """The parallel layout of a vector of global size ``size``: rank r owns ``[start, stop)``.

    Create it collectively with :meth:`create`; the local sizes are the user's or PETSc's
    default split (the first ``size % nranks`` ranks own one more entry).

    Attributes
    ----------
    comm : mpi4py.MPI.Comm
    size : int
        Global size.
    local_size : int
        Number of entries owned by this rank.
    start, stop : int
        This rank's half-open ownership range.
    ranges : tuple of int
        ``ranges[r]`` is the first index owned by rank r; ``ranges[-1] == size``.

    Examples
    --------
    >>> from krylov_adjoint.backends.petsc import Layout
    >>> layout = Layout.create(10)          # on one rank: owns everything
    >>> layout.local_size, layout.start, layout.stop
    (10, 0, 10)
    """

    comm: Any
    size: int
    local_size: int
    start: int
    stop: int
    ranges: tuple[int, ...]

    @classmethod
    def create(cls, size: int | None = None, local_size: int | None = None, *,
               comm: Any = None, name: str = "vector") -> Layout:
        """The layout from a global and/or a local size (collective).

        Parameters
        ----------
        size : int, optional
            Global size; summed from the local sizes when omitted.
        local_size : int, optional
            This rank's share; PETSc's default split when omitted.
        comm : communicator, optional
            mpi4py or petsc4py; ``COMM_WORLD`` by default.
        name : str
            Used in error messages (``"x"``, ``"theta"``).

        Raises
        ------
        ValueError
            On every rank, naming the local sizes of all ranks, when they do not add up to
            ``size`` or one is negative.
        """
        comm = as_mpi_comm(comm)
        rank, nranks = comm.Get_rank(), comm.Get_size()
        guard = ErrorGuard(comm)
        mine = -1
        with guard.local(f"{name} local_size", is_input=True):
            if local_size is not None:
                mine = _as_count(local_size, f"{name} local_size")
        guard.checkpoint(f"the layout of {name}")
        sizes = comm.allgather(mine)
        if size is None and -1 in sizes:
            raise ValueError(f"{name}: give the global size, or the local size on every rank "
                             f"(per-rank local sizes {sizes}, -1 = not given)")
        if -1 in sizes and any(s != -1 for s in sizes):
            raise ValueError(f"{name}: the local size was given on some ranks but not on others "
                             f"(per-rank local sizes {sizes}, -1 = not given)")
        if mine == -1:
            total = _as_count(size, f"{name} size")
            sizes = [total // nranks + (r < total % nranks) for r in range(nranks)]
        else:
            total = sum(sizes)
            if size is not None and _as_count(size, f"{name} size") != total:
                raise ValueError(
                    f"{name}: the local sizes {sizes} (rank order) add up to {total}, but the "
                    f"global size is {size}")
        if total <= 0:
            raise ValueError(f"{name}: the global size must be positive, got {total}")
        offsets = tuple(int(v) for v in np.concatenate(([0], np.cumsum(sizes))))
        return cls(comm, int(total), int(sizes[rank]), offsets[rank], offsets[rank + 1],
                   offsets)

    @classmethod
    def of_vec(cls, vec: Any) -> Layout:
        """The layout of an existing PETSc Vec."""
        start, stop = vec.getOwnershipRange()
        comm = as_mpi_comm(vec.getComm())
        ranges = tuple(int(v) for v in vec.getOwnershipRanges())
        return cls(comm, int(vec.getSize()), int(stop - start), int(start), int(stop), ranges)

    @property
    def rank(self) -> int:
        """This process's rank in :attr:`comm`."""
        return int(self.comm.Get_rank())

    @property
    def nranks(self) -> int:
        """Number of ranks of :attr:`comm`."""
        return int(self.comm.Get_size())

    @property
    def local_sizes(self) -> tuple[int, ...]:
        """Every rank's local size, in rank order."""
        return tuple(b - a for a, b in zip(self.ranges[:-1], self.ranges[1:], strict=True))

    def create_vec(self) -> Any:
        """A new PETSc Vec (zeroed) with this layout."""
        PETSc = petsc()
        vec = PETSc.Vec().createMPI((self.local_size, self.size), comm=self.comm)
        vec.set(0.0)
        return vec

    def gather(self, local: np.ndarray, root: int | None = 0) -> np.ndarray | None:
        """The global vector from every rank's local part (collective).

        Returns the full array on ``root`` and None elsewhere; on every rank when ``root`` is
        None.
        """
        guard = ErrorGuard(self.comm)
        with guard.local("gather: local", is_input=True):
            local = np.ascontiguousarray(local, dtype=np.float64)
            if local.shape != (self.local_size,):
                raise ValueError(f"expected a local array of shape ({self.local_size},), got "
                                 f"{local.shape}")
        guard.checkpoint("gather")
        counts = self.local_sizes
        displs = self.ranges[:-1]
        MPI = mpi()
        if root is None:
            out = np.empty(self.size)
            self.comm.Allgatherv(local, [out, counts, displs, MPI.DOUBLE])
            return out
        out = np.empty(self.size) if self.rank == root else None
        self.comm.Gatherv(local, [out, counts, displs, MPI.DOUBLE] if out is not None else None,
                          root=root)
        return out

    def scatter(self, full: np.ndarray | None, root: int = 0) -> np.ndarray:
        """This rank's part of a global array held on ``root`` (collective)."""
        MPI = mpi()
        guard = ErrorGuard(self.comm)
        send = None
        if self.rank == root:
            with guard.local("scatter: full", is_input=True):
                full = np.ascontiguousarray(full, dtype=np.float64)
                if full.shape != (self.size,):
                    raise ValueError(f"expected shape ({self.size},), got {full.shape}")
                send = [full, self.local_sizes, self.ranges[:-1], MPI.DOUBLE]
        guard.checkpoint("scatter")
        out = np.empty(self.local_size)
        self.comm.Scatterv(send, out, root=root)
        return out

    def local_part(self, full: np.ndarray) -> np.ndarray:
        """This rank's slice of a global array available on every rank (no communication)."""
        return np.asarray(full)[self.start:self.stop]


def _as_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)

"""Agreement on errors across ranks, so that a failure on one rank never deadlocks the others.

Every piece of user code (a callback) runs *locally*: its exceptions are caught and recorded
on the rank where they happen. At the next *checkpoint* (before and after each solve, around
each group of callbacks) all ranks take part in one reduction of an error flag; when a rank
failed, every rank raises the same error naming the failing rank(s) and their messages.
Inside a Krylov solve, a failing operator application fills its output with NaN, so that the
solve stops at once (every rank sees the NaN through the next global reduction) and the
checkpoint after the solve reports the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ...errors import CallbackError, InputError, KrylovAdjointError
from ._import import mpi

__all__ = ["RankFailure", "CollectiveError", "CollectiveCallbackError", "CollectiveInputError",
           "ErrorGuard"]


@dataclass(frozen=True)
class RankFailure:
    """What failed on one rank.

    Attributes
    ----------
    rank : int
    where : str
        The callback or the argument, e.g. ``"operator.matvec"`` or ``"theta"``.
    kind : str
        The exception's class name.
    message : str
        The exception's message.
    is_input : bool
        True when an argument given to the library was at fault (not a callback).
    """

    rank: int
    where: str
    kind: str
    message: str
    is_input: bool = False

    def describe(self) -> str:
        """``"rank 1: operator.matvec: CallbackError: ..."``."""
        return f"rank {self.rank}: {self.kind}: {self.message}"


class CollectiveError(KrylovAdjointError):
    """Raised identically on every rank when some rank(s) failed.

    Attributes
    ----------
    failures : tuple of RankFailure
        The lowest failing rank's (every failing rank's with
        ``ErrorGuard.verbose_failures``), in rank order.
    count : int
        How many ranks failed.
    phase : str
        Where the ranks agreed on the error (``"primal solve"``, ``"gradient"``, ...).
    nranks : int
        Size of the communicator.
    """

    def __init__(self, failures: tuple[RankFailure, ...], phase: str, nranks: int,
                 count: int | None = None) -> None:
        self.failures = failures
        self.phase = phase
        self.nranks = nranks
        self.rank = failures[0].rank
        self.count = len(failures) if count is None else int(count)
        first = failures[0]
        others = [f.rank for f in failures[1:]]
        if others:
            also = f" (also failed on rank(s) {others})"
        elif self.count > 1:
            also = f" (and on {self.count - 1} other rank(s))"
        else:
            also = ""
        details = "\n".join("  " + f.describe() for f in failures)
        verb = "is unusable" if first.is_input else "failed"
        self.summary = (f"{first.where} {verb} on rank {first.rank} of {nranks} during "
                        f"{phase}{also}: {first.kind}: {first.message}")
        KrylovAdjointError.__init__(self, f"{self.summary}\nper rank:\n{details}")

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.summary


class CollectiveCallbackError(CollectiveError, CallbackError):
    """A user callback failed (raised, returned a wrong size or non-finite values) on some rank.

    ``callback`` names the first failing rank's callback, as in :class:`CallbackError`.
    """

    def __init__(self, failures: tuple[RankFailure, ...], phase: str, nranks: int,
                 count: int | None = None) -> None:
        self.callback = failures[0].where
        CollectiveError.__init__(self, failures, phase, nranks, count)


class CollectiveInputError(CollectiveError, InputError):
    """An argument given to the library was unusable on some rank (e.g. a wrong local size).

    ``argument`` names it, as in :class:`InputError`.
    """

    def __init__(self, failures: tuple[RankFailure, ...], phase: str, nranks: int,
                 count: int | None = None) -> None:
        self.argument = failures[0].where
        CollectiveError.__init__(self, failures, phase, nranks, count)


class ErrorGuard:
    """Record local failures on this rank; agree on them across ranks at checkpoints.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm

    Examples
    --------
    >>> from mpi4py import MPI
    >>> guard = ErrorGuard(MPI.COMM_SELF)
    >>> with guard.local("operator.vjp"):
    ...     raise ValueError("bad value")
    >>> guard.failed
    True
    >>> try:
    ...     guard.checkpoint("gradient")
    ... except CollectiveCallbackError as exc:
    ...     print(exc.summary)
    operator.vjp failed on rank 0 of 1 during gradient: ValueError: bad value
    """

    #: Gather every failing rank's message (O(P) memory) instead of the first one's only.
    verbose_failures = False

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.nranks = int(comm.Get_size())
        self._failure: RankFailure | None = None

    @property
    def failed(self) -> bool:
        """True when this rank recorded a failure since the last checkpoint."""
        return self._failure is not None

    def record(self, where: str, exc: BaseException | str, *, is_input: bool = False) -> None:
        """Remember a failure on this rank (the first one is kept)."""
        if self._failure is not None:
            return
        if isinstance(exc, BaseException):
            kind, message = type(exc).__name__, str(exc)
            is_input = is_input or isinstance(exc, InputError)
        else:
            kind, message = ("InputError" if is_input else "CallbackError"), exc
        self._failure = RankFailure(self.rank, where, kind, message, is_input)

    @contextmanager
    def local(self, where: str, *, is_input: bool = False) -> Iterator[None]:
        """Run a block of local (non-collective) code, recording any exception it raises."""
        try:
            yield
        except Exception as exc:  # every failure must reach the checkpoint, whatever it is
            self.record(where, exc, is_input=is_input)

    def call(self, where: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None after recording its exception."""
        try:
            return fn(*args)
        except Exception as exc:
            self.record(where, exc)
            return None

    def checkpoint(self, phase: str) -> None:
        """Collective: raise the same error on every rank if any rank failed.

        Costs one small reduction when nothing failed. On failure, two more reductions (the
        number of failing ranks, the lowest one) and one broadcast of that rank's message:
        O(log P), whatever the number of ranks. With ``verbose_failures`` every failing
        rank's message is gathered instead (O(P) memory on every rank).
        """
        MPI = mpi()
        failed = self._failure is not None
        rank = self.rank if failed else self.nranks
        first = self.comm.allreduce(rank, op=MPI.MIN)
        if first == self.nranks:
            return
        count = self.comm.allreduce(int(failed), op=MPI.SUM)
        if self.verbose_failures:
            gathered = self.comm.allgather(self._failure)
            failures = tuple(f for f in gathered if f is not None)
        else:
            failures = (self.comm.bcast(self._failure, root=first),)
        self._failure = None
        if all(f.is_input for f in failures):
            raise CollectiveInputError(failures, phase, self.nranks, count)
        raise CollectiveCallbackError(failures, phase, self.nranks, count)

    def clear(self) -> None:
        """Forget this rank's recorded failure (local)."""
        self._failure = None

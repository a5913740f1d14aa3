"""The optimisers' records: one per iteration, with the solver work done since the last one."""

from __future__ import annotations

from typing import Any

__all__ = ["IterationRecords"]


class IterationRecords:
    """Count the solver work between optimizer iterations and write the iteration records.

    The same record for every optimiser adapter (scipy, TAO): ``iteration``, ``objective``,
    ``gradient_norm``, ``solves`` (so far), ``primal_iterations`` and ``adjoint_iterations``
    (summed since the previous iteration), ``preconditioner_setups`` (since the previous
    iteration), ``elapsed`` (s).

    Examples
    --------
    >>> records = IterationRecords()
    >>> records.add_iterations(primal=12, adjoint=11, setup=True)
    >>> records.record(objective=1.5, gradient_norm=0.1, solves=1, elapsed=0.2)["primal_iterations"]
    12
    >>> records.record(objective=1.0, gradient_norm=0.0, solves=1, elapsed=0.3)["iteration"]
    2
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self._primal = self._adjoint = self._setups = 0

    def add_iterations(self, *, primal: int, adjoint: int, setup: bool) -> None:
        """Add one gradient evaluation's Krylov iterations (and its preconditioner set-up)."""
        self._primal += int(primal)
        self._adjoint += int(adjoint)
        self._setups += int(setup)

    def add_result(self, result: Any) -> None:
        """Add a :class:`~krylov_adjoint.adjoint.result.GradientResult`'s work."""
        self.add_iterations(primal=result.primal.iterations,
                            adjoint=result.adjoint_solve.iterations,
                            setup=result.preconditioner_rebuilt)

    def record(self, *, objective: float, gradient_norm: float, solves: int,
               elapsed: float) -> dict[str, Any]:
        """Append and return the record of the iteration that just ended."""
        record = {
            "iteration": len(self.history) + 1,
            "objective": float(objective),
            "gradient_norm": float(gradient_norm),
            "solves": int(solves),
            "primal_iterations": self._primal,
            "adjoint_iterations": self._adjoint,
            "preconditioner_setups": self._setups,
            "elapsed": float(elapsed),
        }
        self._primal = self._adjoint = self._setups = 0
        self.history.append(record)
        return record

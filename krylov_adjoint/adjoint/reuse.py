"""When to set the preconditioner up again: the one reuse rule of every backend."""

from __future__ import annotations

import math

__all__ = ["PreconditionerReuse", "ROUTINE"]

#: Why a preconditioner is set up for every new θ with ``reuse=False``.
ROUTINE = "new theta (reuse_preconditioner=False)"

#: A baseline below this many iterations is counted as this many, so that a warm-started
#: solve that happens to converge at once does not make every later solve look degraded.
MIN_BASELINE = 3


class PreconditionerReuse:
    """The reuse rule: set up once, keep across θ, set up again when it stops paying.

    The preconditioner is set up at the first solve and kept while θ changes. It is set up
    again

    - for every new θ with ``reuse=False``;
    - on request (:meth:`request`);
    - within the call, when a primal solve with the kept preconditioner needs more than
      ``rebuild_factor × max(baseline, 3) + 1`` iterations (the baseline being the first
      converged primal solve after the set-up): the solve is stopped there, the
      preconditioner set up at the current θ, and the solve continued from its iterate;
    - within the call, when a primal solve with the kept preconditioner fails: the solve is
      tried once more with a fresh set-up before anything is raised.

    ``rebuild_factor=None`` turns both automatic rules off. A fixed preconditioner (given
    ready-made, or none) is never set up again.

    Parameters
    ----------
    rebuild_factor : float or None
    reuse : bool
    fixed : bool

    Examples
    --------
    >>> rule = PreconditionerReuse(1.5, reuse=True, fixed=False)
    >>> rule.stale_reason
    'first set-up'
    >>> rule.set_up()
    'first set-up'
    >>> rule.record_primal(10)
    >>> rule.iteration_cap(1000)
    16
    """

    def __init__(self, rebuild_factor: float | None, *, reuse: bool, fixed: bool) -> None:
        if rebuild_factor is not None and not rebuild_factor >= 1.0:
            raise ValueError(f"rebuild_factor must be >= 1 or None, got {rebuild_factor!r}")
        self.rebuild_factor = None if rebuild_factor is None else float(rebuild_factor)
        self.reuse = bool(reuse)
        self.fixed = bool(fixed)
        self.baseline_iterations: int | None = None
        self._baseline_rtol: float | None = None
        self.stale_reason = "" if fixed else "first set-up"
        self.setups = 0

    @property
    def automatic(self) -> bool:
        """True when the automatic rules (iteration growth, failure) may set up again."""
        return not self.fixed and self.rebuild_factor is not None

    def new_theta(self) -> None:
        """θ changed: with ``reuse=False`` the preconditioner is stale."""
        if not self.reuse and not self.fixed and self.setups and not self.stale_reason:
            self.stale_reason = ROUTINE

    def request(self, reason: str = "rebuild requested") -> None:
        """Set up again at the next solve (no effect on a fixed preconditioner)."""
        if not self.fixed:
            self.stale_reason = reason

    def set_up(self) -> str:
        """Record a set-up; return why it happened."""
        reason = self.stale_reason or "set up"
        self.stale_reason = ""
        self.baseline_iterations = None
        self._baseline_rtol = None
        self.setups += 1
        return reason

    def iteration_cap(self, maxiter: int, rtol: float | None = None) -> int:
        """The iteration limit of a primal solve with the kept preconditioner.

        With a ``rtol`` other than the baseline's (adaptive accuracy), the baseline is scaled
        by the ratio of the digits asked for, ``log(rtol) / log(rtol_baseline)``.
        """
        if not self.automatic or self.baseline_iterations is None:
            return maxiter
        assert self.rebuild_factor is not None
        baseline = max(self.baseline_iterations, MIN_BASELINE)
        if rtol is not None and self._baseline_rtol is not None:
            baseline *= max(_digits(rtol) / _digits(self._baseline_rtol), 1.0)
        cap = math.floor(self.rebuild_factor * baseline) + 1
        return min(maxiter, cap)

    def record_primal(self, iterations: int, rtol: float | None = None) -> None:
        """Take the first converged primal solve after a set-up as the baseline."""
        if self.baseline_iterations is None:
            self.baseline_iterations = int(iterations)
            self._baseline_rtol = rtol


def _digits(rtol: float) -> float:
    """Decimal digits asked of a solve (at least one)."""
    return max(-math.log10(max(rtol, 1e-300)), 1.0)

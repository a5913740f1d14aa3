"""When to set the preconditioner up again: the one reuse rule of every backend."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["PreconditionerReuse", "ROUTINE", "REFRESH_SHARE"]

#: Why a preconditioner is set up for every new θ with ``reuse=False``.
ROUTINE = "new theta (reuse_preconditioner=False)"

#: A baseline below this many iterations is counted as this many, so that a warm-started
#: solve that happens to converge at once does not make every later solve look degraded.
MIN_BASELINE = 3

#: The share of ``rebuild_factor − 1`` that triggers a set-up keeping the coarsening. On the
#: 512² inverse-conductivity loop (L-BFGS-B, adaptive accuracy, 35 gradients, CG + smoothed
#: aggregation) the mean gradient over a cold primal was 0.60 with the full factor 1.5
#: (3 set-ups, 8.1 Krylov iterations per gradient), 0.49 at 1.2 (5 set-ups, 6.3), 0.51 at
#: 1.1 and at 1.0.
REFRESH_SHARE = 0.4


class PreconditionerReuse:
    """The reuse rule: set up once, keep across θ, set up again when it stops paying.

    The preconditioner is set up at the first solve and kept while θ changes. It is set up
    again

    - for every new θ with ``reuse=False``;
    - on request (:meth:`request`);
    - within the call, when a primal solve with the kept preconditioner needs more than
      ``rebuild_factor × max(rate × digits, 3) + 1`` iterations, where the rate is the
      iterations per decade of residual reduction of the first converged primal solve after
      the set-up and ``digits = −log₁₀ rtol`` what a cold start needs: the solve is stopped
      there, the preconditioner set up at the current θ, and the solve continued from its
      iterate. (A warm-started solve needs fewer; counting iterations instead of a rate set
      the preconditioner up again whenever a warm start had been unusually good.)
    - within the call, when a primal solve with the kept preconditioner fails: the solve is
      tried once more with a fresh set-up before anything is raised.

    A set-up after the first may *keep the interpolation*: an AMG hierarchy keeps its
    coarsening and recomputes its Galerkin coarse operators, smoothers and coarse solver at
    the new A (PETSc GAMG's default ``-pc_gamg_reuse_interpolation``; on the serial backend
    :meth:`~krylov_adjoint.precond.AMGPreconditioner.refreshed`). When the first converged
    primal solve after such a set-up needs more than ``rebuild_factor`` times the iterations
    per decade of the last full set-up's, the coarsening no longer suits A: the next set-up
    is a full one, at the next solve. Such a set-up costs a few cycles (0.03 s against 0.6 s
    for a full one at 512²), so the iteration cap uses the smaller factor
    ``1 + REFRESH_SHARE × (rebuild_factor − 1)`` when the next set-up can keep the coarsening
    (``cheap=True`` in :meth:`iteration_cap`).

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
    >>> rule.record_primal(10, [1.0, 1e-10])          # 10 iterations for 10 decades
    >>> rule.iteration_cap(1000, rtol=1e-10), rule.iteration_cap(1000, rtol=1e-4)
    (16, 7)
    >>> rule.iteration_cap(1000, rtol=1e-10, cheap=True)  # 1.2 × 10 + 1
    13
    """

    def __init__(self, rebuild_factor: float | None, *, reuse: bool, fixed: bool) -> None:
        if rebuild_factor is not None and not rebuild_factor >= 1.0:
            raise ValueError(f"rebuild_factor must be >= 1 or None, got {rebuild_factor!r}")
        self.rebuild_factor = None if rebuild_factor is None else float(rebuild_factor)
        self.reuse = bool(reuse)
        self.fixed = bool(fixed)
        #: Iterations per decade of the first converged primal solve after the set-up.
        self.baseline_rate: float | None = None
        self.stale_reason = "" if fixed else "first set-up"
        self.setups = 0
        #: Iterations per decade after the last full set-up (None: the next one is full).
        self.full_rate: float | None = None
        self._kept_interpolation = False

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

    @property
    def kept_interpolation(self) -> bool:
        """Whether the last set-up kept the coarsening of the full one before it."""
        return self._kept_interpolation

    @property
    def may_keep_interpolation(self) -> bool:
        """Whether the next set-up may keep the coarsening of the last full one."""
        return self.full_rate is not None

    def set_up(self, *, kept_interpolation: bool = False) -> str:
        """Record a set-up (``kept_interpolation``: the coarsening was kept); return why it
        happened."""
        reason = self.stale_reason or "set up"
        self.stale_reason = ""
        self.baseline_rate = None
        self.setups += 1
        self._kept_interpolation = bool(kept_interpolation)
        return reason

    def iteration_cap(self, maxiter: int, rtol: float, *, cheap: bool = False) -> int:
        """The iteration limit of a primal solve to ``rtol`` with the kept preconditioner:
        ``rebuild_factor`` times what a cold start at the baseline's rate would need
        (``rate × −log₁₀ rtol``, at least :data:`MIN_BASELINE`), plus one. ``cheap``: the
        next set-up would keep the coarsening, so the factor is
        ``1 + REFRESH_SHARE × (rebuild_factor − 1)``."""
        if not self.automatic or self.baseline_rate is None:
            return maxiter
        assert self.rebuild_factor is not None
        factor = (1.0 + REFRESH_SHARE * (self.rebuild_factor - 1.0) if cheap
                  else self.rebuild_factor)
        needed = max(self.baseline_rate * _digits(rtol), MIN_BASELINE)
        return min(maxiter, math.floor(factor * needed + 1e-9) + 1)

    def record_primal(self, iterations: int, residual_norms: Any) -> None:
        """Take the first converged primal solve after a set-up that reduced its residual as
        the baseline: its iterations per decade of residual reduction (a rate, so that warm
        starts and changing tolerances compare fairly)."""
        norms = np.asarray(residual_norms, dtype=float)
        if self.baseline_rate is not None or iterations <= 0 or norms.size < 2:
            return
        if norms[-1] > 0.0 and norms[0] > norms[-1]:
            decades = math.log10(norms[0] / norms[-1])
        elif norms[0] > 0.0:  # reduced to exactly zero: count sixteen digits
            decades = 16.0
        else:
            return
        self.baseline_rate = iterations / max(decades, 1e-3)
        if not self._kept_interpolation:
            self.full_rate = self.baseline_rate
        elif (self.full_rate is not None and self.rebuild_factor is not None
              and self.baseline_rate > self.rebuild_factor * max(self.full_rate, 1e-3)):
            slower = self.baseline_rate / self.full_rate
            self.full_rate = None
            self.stale_reason = (f"with the kept coarsening the primal solve needs {slower:.1f}x "
                                 "the iterations per decade of the last full set-up")

def _digits(rtol: float) -> float:
    """Decimal digits asked of a solve (at least one)."""
    return max(-math.log10(max(rtol, 1e-300)), 1.0)

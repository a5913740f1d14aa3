"""Book-keeping shared by the Krylov methods: history, monitor, NaN blame, the result."""

from __future__ import annotations

import cmath
import math
import time

import numpy as np

from ..errors import NonFiniteError
from .result import ConvergenceReason, SolveResult
from .stopping import Monitor

# An unconverged solve whose best residual stays above these bounds, without halving over
# its last ``stall_window`` iterations, gets the hint that A may be singular with an
# inconsistent right-hand side (see KrylovRun.stalled_far_above_target).
_FAR_ABOVE_TARGET = 1e3
_FAR_ABOVE_ROUNDING = 1e-8  # relative to ‖b‖: above the attainable accuracy of most solves


class KrylovRun:
    """History and monitor of one solve; builds the :class:`SolveResult`.

    The methods may iterate on a system scaled by a power of two, ``A (x/s) = b/s`` (see
    :func:`~krylov_adjoint.krylov.solve`): :attr:`target` and the norms passed to
    :meth:`record`, :meth:`replace_last` and :meth:`stagnated` are in those working units;
    the monitor, the history and the result are in the units of the user's system, and
    :meth:`finish` returns ``s·x``. Multiplying by a power of two is exact.
    """

    def __init__(self, method: str, rhs_norm: float, target: float, rtol: float, atol: float,
                 monitor: Monitor | None, labels: tuple[str, str], phase: str,
                 scale: float = 1.0) -> None:
        self.method = method
        self.phase = phase
        self.rhs_norm = rhs_norm
        self.scale = scale
        self.target = target / scale
        self.converged_reason = (ConvergenceReason.CONVERGED_RTOL if rtol * rhs_norm >= atol
                                 else ConvergenceReason.CONVERGED_ATOL)
        self.monitor = monitor
        self.operator_label, self.preconditioner_label = labels
        self.history: list[float] = []
        self.false_convergence_norm: float | None = None
        self.iterations = 0
        #: Iterations without progress after which a solve counts as stalled: GMRES sets its
        #: restart length (one cycle); at least a quarter of the iterations made.
        self.stall_window = 30
        #: Method-specific facts for the result's ``extra`` (e.g. the recycled dimension).
        self.extra: dict = {}
        self.start = time.perf_counter()

    def record(self, rnorm: float) -> None:
        """Append a residual norm (iteration ``self.iterations``) and call the monitor."""
        rnorm = float(rnorm) * self.scale
        self.history.append(rnorm)
        if self.monitor is not None:
            self.monitor(self.phase, self.iterations, rnorm)

    def replace_last(self, rnorm: float) -> None:
        """Replace the last recorded estimate by the explicitly computed residual norm."""
        self.history[-1] = float(rnorm) * self.scale

    def blame(self, *, preconditioned: np.ndarray | None = None,
              product: np.ndarray | None = None) -> None:
        """Raise :class:`NonFiniteError` naming whichever of M·v or A·z went non-finite."""
        if preconditioned is not None and not np.isfinite(preconditioned).all():
            raise NonFiniteError(self.preconditioner_label,
                                 f"returned NaN or Inf at {self.method} iteration "
                                 f"{self.iterations}")
        where = f"at {self.method} iteration {self.iterations}"
        if product is not None and not np.isfinite(product).all():
            raise NonFiniteError(self.operator_label, f"returned NaN or Inf {where}")
        raise NonFiniteError(self.operator_label,
                             f"the Krylov recurrence produced NaN or Inf {where} (overflow: "
                             "check the scaling of the operator and the right-hand side)")

    def check_finite(self, value: float, *, preconditioned: np.ndarray | None = None,
                     product: np.ndarray | None = None) -> None:
        """Blame a callback when a scalar of the recurrence (real or complex) is not finite."""
        if not cmath.isfinite(value):
            self.blame(preconditioned=preconditioned, product=product)

    def stagnated(self, true_norm: float) -> bool:
        """After the recurrence claimed convergence but the true residual ``true_norm`` did
        not meet the target: True when the previous such claim was not improved upon by at
        least a factor 2, i.e. the target is below the attainable accuracy."""
        previous = self.false_convergence_norm
        self.false_convergence_norm = true_norm
        return previous is not None and true_norm >= 0.5 * previous

    def stagnation(self, x: np.ndarray) -> SolveResult:
        """The result of a solve stopped by :meth:`stagnated`."""
        return self.finish(
            x, ConvergenceReason.DIVERGED_STAGNATION,
            f"the true residual stagnates at {self.history[-1]:.3e} above the target "
            f"{self.target * self.scale:.3e}: the tolerance is below the accuracy attainable in "
            "floating point with this operator and preconditioner; loosen rtol or atol")

    def stalled_far_above_target(self) -> bool:
        """Whether the residual history stalls far above the target: its best value exceeds
        ``1e3 ×`` the target and ``1e-8 ‖b‖``, and the last ``max(stall_window,
        iterations/4)`` iterations did not halve the best residual reached before them
        (a flat or growing residual, as with an inconsistent singular system)."""
        history = self.history
        window = max(self.stall_window, self.iterations // 4)
        if len(history) <= window + 1:
            return False
        best = min(history)
        if not (best > _FAR_ABOVE_TARGET * self.target * self.scale
                and best > _FAR_ABOVE_ROUNDING * self.rhs_norm):
            return False
        return min(history[-window:]) >= 0.5 * min(history[:-window])

    def singular_hint(self) -> str:
        """Advice for a residual stuck far above the target, to append to a message."""
        best = min(self.history) if self.history else math.nan
        longer_restart = " or a longer restart" if self.method == "gmres" else ""
        return (f"the residual stays far above the target (best {best:.3e}, target "
                f"{self.target * self.scale:.3e}): A may be singular with an inconsistent "
                "right-hand side (b not in the range of A); make the system consistent by "
                "projecting the nullspace out of b (for a pure Neumann problem, subtract the "
                "mean of b); if A is nonsingular, a better preconditioner"
                f"{longer_restart} may help")

    def finish(self, x: np.ndarray, reason: ConvergenceReason, message: str = "", *,
               singular_hint: bool = False) -> SolveResult:
        """Freeze the run into a :class:`SolveResult`.

        An unconverged solve gets :meth:`singular_hint` appended to its message when
        ``singular_hint`` is True or :meth:`stalled_far_above_target`.
        """
        if not message:
            message = {
                ConvergenceReason.DIVERGED_MAXITER: "maximum number of iterations reached",
            }.get(reason, reason.name.lower().replace("_", " "))
        if not reason.converged and (singular_hint or self.stalled_far_above_target()):
            message = f"{message}; {self.singular_hint()}"
        if self.scale != 1.0:
            x = x * self.scale
        return SolveResult(
            x=x, reason=reason, iterations=self.iterations,
            residual_norms=np.asarray(self.history, dtype=float),
            target=self.target * self.scale,
            rhs_norm=self.rhs_norm, seconds=time.perf_counter() - self.start,
            method=self.method, message=message, extra=dict(self.extra),
        )

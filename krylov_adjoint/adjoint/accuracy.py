"""How accurate a gradient is, and how accurate it needs to be: the certificate and the
adaptive choice of the solve tolerances.

The certificate (:func:`estimate_errors`, formulas in docs/method.md, "Error estimates").
With the primal residual ``r = b − A x`` and the computed λ:

- the objective's dual-weighted residual ``λᵀr``: ``J(x*) ≈ J(x) + λᵀr`` (first order in the
  primal error, exact for a linear J and an exact λ); the corrected objective
  ``J_c(x, λ) = J(x) + λᵀ(b − A x)`` is wrong by a product of the primal and adjoint errors
  (second order), estimated by ``|J_c(x̂, λ̂) − J_c(x, λ)|`` with the corrected x̂, λ̂ below;
- the gradient error ``‖dJ/dθ − g‖`` is estimated by ``‖G(x̂, λ̂) − G(x, λ)‖``, where
  ``G(x, λ) = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)`` is the gradient formula, ``x̂ = x + ê`` with
  ``A ê ≈ r`` and ``λ̂ = λ + ê_λ`` with ``Aᵀ ê_λ ≈ ∂J/∂x(x̂) − Aᵀλ``: two *correction
  solves* (preconditioned by M and Mᵀ, from zero, to the relative residual
  :data:`CORRECTION_RTOL`, or fewer iterations when the main solves' rate says that is
  enough: :func:`correction_iterations`). G is affine in λ and, for J quadratic in x, in x,
  so the estimate is the true error up to the correction solves' own error (a fraction of
  it).

The adaptive mode (:class:`AccuracyTarget`) asks for ``‖dJ/dθ − g‖ ≤ η‖g‖`` — the relative
condition on inexact gradients of Carter (1991) for trust-region methods and the "norm test"
of Byrd, Chin, Nocedal and Wu (2012) for line searches: −g stays a descent direction for
η < 1 — and optionally that the corrected objective's estimated error be at most
``objective_atol``. :class:`ToleranceController` picks the primal and adjoint tolerances from
the last calls (the gradient's estimate is close to proportional to the relative residual,
the corrected objective's to its square) and tightens them when the certificate says the
target was missed, never below the solver's own ``rtol``/``adjoint_rtol``.

References
----------
R. G. Carter, "On the global convergence of trust region algorithms using inexact gradient
information", SIAM J. Numer. Anal. 28 (1991) 251–265.
R. H. Byrd, G. M. Chin, J. Nocedal, Y. Wu, "Sample size selection in optimization methods for
machine learning", Math. Program. 134 (2012) 127–155.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..krylov.result import SolveResult

if TYPE_CHECKING:
    from .engine import GradientEngine

__all__ = ["AccuracyTarget", "ErrorEstimate", "AccuracyReport", "ToleranceController",
           "estimate_errors", "merge_solves", "correction_iterations", "CORRECTION_RTOL",
           "CORRECTION_ERROR"]

#: Relative residual of the two correction solves of the certificate. Measured on the test
#: registry's problems over rtol 1e-1…1e-10: the true gradient error over the estimate lies in
#: [0.94, 1.05] with AMG or ILU (1–2 correction iterations each), in [0.84, 1.4] with Jacobi
#: or no preconditioner (at 0.25 it reached 6: a weak M needs the iterations).
CORRECTION_RTOL = 0.05

#: CG's correction solves also stop after the iterations that the main solves' rate predicts
#: reduce the correction's error to this fraction (:func:`correction_iterations`). With a
#: strong preconditioner the residual test above asks for more than the estimate needs: on
#: the 512² inverse-conductivity problem (CG + smoothed-aggregation AMG, 0.4 residual
#: reduction per iteration) two iterations per correction instead of three or four put the
#: true error over the estimate at 1.03–1.17 (against 0.99–1.00); in an L-BFGS-B loop the
#: corrections took 5.1–5.3 iterations per gradient instead of 6.2 (gradient over a cold
#: primal 0.64 → 0.61).
CORRECTION_ERROR = 0.2

#: :func:`correction_iterations` applies only to CG solves reducing the residual at least this
#: much per iteration (a strong preconditioner of a symmetric positive definite problem,
#: whose residual and error fall together). For GMRES and BiCGStab the mean rate of a long
#: main solve (superlinear on small problems) overstates what a short correction from zero
#: gets: on the test registry's problems the predicted count left true errors up to 4.3×
#: the estimate; there the residual test alone stops the corrections.
STRONG_RATE = 0.5

#: The loosest tolerance the adaptive mode starts a solve with. Not 10⁻¹: on the optimisation
#: benchmark it saved 1.3 of 8 solve iterations per gradient (conductivity, 512²), but
#: L-BFGS-B on the source problem (256²) ended 30 iterations 29 % higher in J (against 3 % at
#: 10⁻²): gradient errors within η‖g‖ are not small against the gradient *differences* of its
#: curvature pairs, which the tighter cap keeps clean.
LOOSEST_RTOL = 1e-2

#: Aim below the target by this factor (the estimate-to-residual ratio drifts between calls).
SAFETY = 0.3

#: Most solve rounds per gradient in the adaptive mode (the last one is at the floor).
MAX_ROUNDS = 4


@dataclass(frozen=True)
class AccuracyTarget:
    """What a caller needs of one gradient.

    Parameters
    ----------
    gradient_rtol : float
        η in ``‖dJ/dθ − g‖ ≤ η‖g‖`` (0 < η < 1).
    objective_atol : float, optional
        A bound on the estimated error of the corrected objective ``J + λᵀr``
        (:attr:`ErrorEstimate.objective_error`, the value
        :attr:`~krylov_adjoint.GradientResult.objective_corrected` is accurate to).

    Examples
    --------
    >>> AccuracyTarget(1e-3).met(gradient_error=1e-4, gradient_norm=1.0, objective_error=5.0)
    True
    >>> AccuracyTarget(1e-3, objective_atol=1e-6).met(1e-4, 1.0, 5.0)
    False
    """

    gradient_rtol: float
    objective_atol: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.gradient_rtol < 1.0:
            raise ValueError(f"gradient_rtol must be in (0, 1), got {self.gradient_rtol!r}")
        if self.objective_atol is not None and not self.objective_atol > 0.0:
            raise ValueError(f"objective_atol must be positive, got {self.objective_atol!r}")

    def met(self, gradient_error: float, gradient_norm: float, objective_error: float) -> bool:
        """Whether estimates this small satisfy the target."""
        ok = gradient_error <= self.gradient_rtol * gradient_norm
        if self.objective_atol is not None:
            ok = ok and objective_error <= self.objective_atol
        return bool(ok)

    def shortfall(self, estimate: ErrorEstimate) -> float:
        """How many times too large the estimates are (≤ 1 when met)."""
        ratios = [estimate.gradient_error / max(self.gradient_rtol * estimate.gradient_norm,
                                                np.finfo(float).tiny)]
        if self.objective_atol is not None:
            ratios.append(estimate.objective_error / self.objective_atol)
        return max(ratios)


@dataclass(frozen=True)
class ErrorEstimate:
    """The certificate of one gradient (see the module docstring).

    Attributes
    ----------
    objective_correction : float
        ``λᵀr``, the dual-weighted residual: ``J(x*) ≈ J(x) + λᵀr``; ``|λᵀr|`` estimates the
        error of J itself.
    objective_error : float
        The estimated error of the corrected objective ``J + λᵀr`` (second order: a product
        of the primal and adjoint errors).
    gradient_error : float
        The estimate of ``‖dJ/dθ − g‖₂``.
    gradient_norm : float
        ``‖g‖₂`` of the returned gradient.
    primal_residual, adjoint_residual : float
        ``‖b − A x‖₂`` and ``‖∂J/∂x − Aᵀλ‖₂``.
    correction_iterations : int
        Iterations of the two correction solves.
    """

    objective_correction: float
    objective_error: float
    gradient_error: float
    gradient_norm: float
    primal_residual: float
    adjoint_residual: float
    correction_iterations: int

    @property
    def gradient_relative_error(self) -> float:
        """``gradient_error / ‖g‖`` (inf for a zero gradient with a nonzero error)."""
        if self.gradient_norm > 0.0:
            return self.gradient_error / self.gradient_norm
        return 0.0 if self.gradient_error == 0.0 else math.inf

    def as_dict(self) -> dict[str, float]:
        """A JSON-friendly record."""
        return {**asdict(self), "gradient_relative_error": self.gradient_relative_error}


@dataclass(frozen=True)
class AccuracyReport:
    """Which tolerances a gradient was computed with, and why.

    Attributes
    ----------
    mode : str
        ``"fixed"`` (the solver's ``rtol``/``adjoint_rtol``) or ``"adaptive"``.
    primal_rtol, adjoint_rtol : float
        The tolerances of the last round.
    rounds : int
        Solve rounds (each continues both solves from the previous round's x and λ).
    reason : str
        Why the call stopped where it did.
    target : AccuracyTarget or None
    """

    mode: str
    primal_rtol: float
    adjoint_rtol: float
    rounds: int
    reason: str
    target: AccuracyTarget | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly record."""
        record: dict[str, Any] = {"mode": self.mode, "primal_rtol": self.primal_rtol,
                                  "adjoint_rtol": self.adjoint_rtol, "rounds": self.rounds,
                                  "reason": self.reason}
        if self.target is not None:
            record["gradient_rtol"] = self.target.gradient_rtol
            record["objective_atol"] = self.target.objective_atol
        return record


def correction_iterations(*solves: SolveResult) -> int | None:
    """The iterations after which a correction solve's error is predicted to be at most
    :data:`CORRECTION_ERROR` of the correction: the least k with ``ρᵏ <= CORRECTION_ERROR``,
    ``ρ`` the slowest mean residual reduction per iteration of ``solves`` (the main solves of
    the same operator and preconditioner), at least 1. None (no cap: the residual test
    alone) unless every solve is CG, iterated, and ``ρ <= STRONG_RATE``.

    Examples
    --------
    >>> import numpy as np
    >>> from krylov_adjoint.krylov.result import ConvergenceReason
    >>> fast = SolveResult(np.zeros(1), ConvergenceReason.CONVERGED_RTOL, 4,
    ...                    np.array([1.0, 0.4, 0.16, 0.064, 0.0256]), 0.03, 1.0, 0.1, "cg")
    >>> correction_iterations(fast)      # 0.4 per iteration: 0.4² = 0.16 <= 0.2
    2
    >>> slower = SolveResult(np.zeros(1), ConvergenceReason.CONVERGED_RTOL, 2,
    ...                      np.array([1.0, 0.5, 0.25]), 0.3, 1.0, 0.1, "cg")
    >>> correction_iterations(fast, slower)  # the slower solve decides: 0.5³ = 0.125
    3
    >>> weak = SolveResult(np.zeros(1), ConvergenceReason.CONVERGED_RTOL, 2,
    ...                    np.array([1.0, 0.9, 0.81]), 0.9, 1.0, 0.1, "cg")
    >>> correction_iterations(fast, weak) is None  # a weak preconditioner: no cap
    True
    """
    rates = []
    for solve in solves:
        if solve.method != "cg":
            return None
        norms = np.asarray(solve.residual_norms, dtype=float)
        if solve.iterations > 0 and norms.size >= 2 and norms[0] > 0.0:
            rates.append((norms[-1] / norms[0]) ** (1.0 / solve.iterations))
    if not rates:
        return None
    rate = max(rates)
    if not rate <= STRONG_RATE:
        return None
    if rate <= CORRECTION_ERROR:
        return 1
    return math.ceil(math.log(CORRECTION_ERROR) / math.log(rate) - 1e-9)


def estimate_errors(engine: GradientEngine, bound: Any, b: Any, x: Any, dj_dx: Any, lam: Any,
                    gradient: Any, objective: float,
                    correction_cap: int | None = None) -> ErrorEstimate:
    """The certificate of the gradient ``gradient = G(x, λ)`` and of ``objective = J(x)``
    (see the module docstring).

    Costs three operator products (A x, Aᵀλ and A ê), two short correction solves (with M and
    with Mᵀ, each to :data:`CORRECTION_RTOL` or ``correction_cap`` iterations, whichever comes
    first: see :func:`correction_iterations`), one J and one ∂J/∂x at x̂ and one evaluation of
    the VJPs.
    Every vector stays the backend's.
    """
    backend = engine.backend
    # each vector is dropped once used: at 10⁷ unknowns one is 40 MB per rank on 2 ranks
    residual = backend.combine(b, -1.0, backend.apply(bound, x, transpose=False))
    transposed_lam = backend.apply(bound, lam, transpose=True)
    adjoint_norm = backend.norm(backend.combine(dj_dx, -1.0, transposed_lam))
    objective_correction = backend.dot(lam, residual)
    primal_norm = backend.norm(residual)

    x_error, first = engine._solve("tangent", bound, residual,
                                   engine.correction_settings("tangent", correction_cap),
                                   x0=None, check=False)
    corrected_residual = backend.combine(residual, -1.0,
                                         backend.apply(bound, x_error, transpose=False))
    del residual
    iterations = first.iterations
    del first
    x_hat = backend.combine(x, 1.0, x_error)
    del x_error
    objective_hat = backend.objective_value(bound, x_hat)
    corrected_rhs = backend.combine(backend.objective_grad_x(bound, x_hat), -1.0,
                                    transposed_lam)
    del transposed_lam
    lam_error, second = engine._solve("output_adjoint", bound, corrected_rhs,
                                      engine.correction_settings("output_adjoint",
                                                                  correction_cap),
                                      x0=None,
                                      check=False)
    del corrected_rhs
    iterations += second.iterations
    del second
    lam_hat = backend.combine(lam, 1.0, lam_error)
    del lam_error
    objective_error = abs(objective_hat + backend.dot(lam_hat, corrected_residual)
                          - objective - objective_correction)
    del corrected_residual
    corrected = backend.parameter_gradient(bound, x_hat, lam_hat)
    del x_hat, lam_hat
    gradient_error = backend.norm(backend.combine(corrected, -1.0, gradient))
    if not math.isfinite(gradient_error):
        gradient_error = math.inf
    return ErrorEstimate(
        objective_correction=float(objective_correction),
        objective_error=float(objective_error) if math.isfinite(objective_error) else math.inf,
        gradient_error=float(gradient_error),
        gradient_norm=float(backend.norm(gradient)), primal_residual=float(primal_norm),
        adjoint_residual=float(adjoint_norm), correction_iterations=int(iterations))


class ToleranceController:
    """Chooses the primal and adjoint tolerances of adaptive gradients.

    The gradient's estimate is close to proportional to the relative residual ρ reached
    (both solves' errors enter it linearly), ``ε_g ≈ c_g·ρ``, and the corrected objective's to
    its square (a product of the two errors), ``ε_J ≈ c_J·ρ²``. The ratios and ``‖g‖`` are
    learnt from the last call, and the tolerance aimed at is the smaller of
    ``SAFETY·η‖g‖/c_g`` and ``√(SAFETY·objective_atol/c_J)``, between the solver's own
    tolerance (the floor) and :data:`LOOSEST_RTOL`.

    Examples
    --------
    >>> control = ToleranceController(floor=1e-10)
    >>> control.first_rtol(AccuracyTarget(1e-2))       # nothing learnt yet
    0.0001
    >>> control.learn(gradient_error=1e-6, gradient_norm=1.0, objective_error=1e-5,
    ...               relative_residual=1e-8)
    >>> round(control.first_rtol(AccuracyTarget(1e-2)), 12)
    3e-05
    >>> round(control.first_rtol(AccuracyTarget(1e-2, objective_atol=1e-6)), 12)
    0.0
    """

    #: The first tolerance when nothing is known yet.
    START_RTOL = 1e-4

    def __init__(self, floor: float) -> None:
        self.floor = float(floor)
        self._gradient_ratio: float | None = None   # c_g in ε_g ≈ c_g·ρ
        self._objective_ratio: float | None = None  # c_J in ε_J ≈ c_J·ρ²
        self._gradient_norm: float | None = None

    def first_rtol(self, target: AccuracyTarget) -> float:
        """The tolerance to start a new call with."""
        if self._gradient_ratio is None or not self._gradient_norm:
            return self._clamp(self.START_RTOL)
        rtol = SAFETY * target.gradient_rtol * self._gradient_norm / self._gradient_ratio
        if target.objective_atol is not None and self._objective_ratio:
            rtol = min(rtol, math.sqrt(SAFETY * target.objective_atol / self._objective_ratio))
        return self._clamp(rtol)

    def tighter_rtol(self, rtol: float, shortfall: float, reached: float) -> float:
        """The tolerance of the next round after missing the target by ``shortfall``×
        (``reached``: the relative residual the last round actually reached)."""
        return self._clamp(min(rtol, reached) * SAFETY / max(shortfall, 1.0))

    def learn(self, gradient_error: float, gradient_norm: float, objective_error: float,
              relative_residual: float) -> None:
        """Record one call's estimates against the relative residual it reached."""
        if relative_residual > 0.0:
            if math.isfinite(gradient_error) and gradient_error > 0.0:
                self._gradient_ratio = gradient_error / relative_residual
            if math.isfinite(objective_error) and objective_error > 0.0:
                self._objective_ratio = objective_error / relative_residual**2
        if math.isfinite(gradient_norm) and gradient_norm > 0.0:
            self._gradient_norm = gradient_norm

    def at_floor(self, rtol: float) -> bool:
        """Whether ``rtol`` is the floor (nothing tighter is allowed)."""
        return rtol <= self.floor * (1.0 + 1e-12)

    def _clamp(self, rtol: float) -> float:
        return float(min(max(rtol, self.floor), max(LOOSEST_RTOL, self.floor)))


def relative_residual(solve: SolveResult) -> float:
    """‖r‖/‖b‖ reached by a solve (0 for a zero right-hand side)."""
    return solve.residual_norm / solve.rhs_norm if solve.rhs_norm > 0.0 else 0.0


def merge_solves(first: SolveResult, later: SolveResult) -> SolveResult:
    """One record for a solve continued in a later round: iterations and times summed,
    residual histories joined, the later round's reason, target and solution.

    Examples
    --------
    >>> import numpy as np
    >>> from krylov_adjoint.krylov.result import ConvergenceReason
    >>> a = SolveResult(np.zeros(1), ConvergenceReason.CONVERGED_RTOL, 2,
    ...                 np.array([1.0, 0.1, 0.01]), 0.01, 1.0, 0.5, "cg")
    >>> b = SolveResult(np.zeros(1), ConvergenceReason.CONVERGED_RTOL, 1,
    ...                 np.array([0.01, 1e-4]), 1e-4, 1.0, 0.25, "cg")
    >>> merged = merge_solves(a, b)
    >>> merged.iterations, merged.seconds, merged.residual_norms.tolist()
    (3, 0.75, [1.0, 0.1, 0.01, 0.0001])
    """
    from dataclasses import replace

    history = np.concatenate([np.asarray(first.residual_norms),
                              np.asarray(later.residual_norms)[1:]])
    rounds = int(first.extra.get("rounds", 1)) + 1
    return replace(later, iterations=first.iterations + later.iterations,
                   residual_norms=history, seconds=first.seconds + later.seconds,
                   extra={**later.extra, "rounds": rounds})

"""Taylor tests: the gradient predicts J(θ + h dθ) to second order in h.

The analysis (remainders, noise floor, usable rates, verdict) is written once for any
expected order: :mod:`.hessian` runs it at order 3 (the Hessian's Taylor test) and on the
norms of gradient remainders (order 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConvergenceError
from ..krylov.result import SolveResult
from ._random import RandomLike, as_float_vector, as_generator, relative_step, scaled_direction
from ._remainders import ROUNDOFF_FACTOR as ROUNDOFF_FACTOR
from ._remainders import analyse_remainders
from .report import CheckResult, format_number
from .space import dot, norm, space_of

__all__ = ["TaylorReport", "taylor_test", "taylor_test_solver"]

#: First step: ``h₀‖dθ‖ = FIRST_STEP·‖θ‖`` (``= FIRST_STEP`` when θ = 0).
FIRST_STEP = 1e-2
#: Number of halvings of the first step when ``steps`` is not given.
HALVINGS = 5
#: A solve with true residual ``r`` changes J by about ``λᵀr``, at most ``‖λ‖‖r‖``;
#: remainders below ``SOLVER_NOISE_FACTOR · ‖λ‖ · max‖r‖`` are solver noise (two
#: evaluations per remainder, and a margin).
SOLVER_NOISE_FACTOR = 4.0


@dataclass(frozen=True, eq=False)
class TaylorReport:
    """Remainders and convergence rates of a Taylor test.

    With ``J₀ = J(θ)``, ``Jₖ = J(θ + hₖ dθ)`` and ``s = gradient·dθ``:

    - first-order remainders ``|Jₖ − J₀|``, rates ≈ 1 (without the gradient);
    - second-order remainders ``|Jₖ − J₀ − hₖ s|``, rates ≈ 2 when the gradient is right,
      ≈ 1 when it is wrong.

    Rates are ``log(rₖ / rₖ₊₁) / log(hₖ / hₖ₊₁)`` (``log₂(rₖ / rₖ₊₁)`` for halved steps).

    The same report serves the other Taylor tests, with ``order`` the expected rate of
    ``remainders``: :func:`~krylov_adjoint.verify.second_order_taylor_test` (order 3:
    ``|Jₖ − J₀ − hₖ s − ½hₖ² c|`` with ``c = dθᵀH dθ``) and
    :func:`~krylov_adjoint.verify.hessian_gradient_test` (order 2, on gradients:
    ``values`` are ``‖g(θ + hₖ dθ)‖``, ``value`` is ``‖g(θ)‖``, ``slope`` is ``‖H dθ‖``,
    the remainders ``‖gₖ − g₀‖`` and ``‖gₖ − g₀ − hₖ H dθ‖``).

    Attributes
    ----------
    steps : ndarray
        The step sizes hₖ, decreasing.
    values : ndarray
        Jₖ.
    value : float
        J₀.
    slope : float
        ``gradient·dθ``, the predicted derivative along dθ.
    first_order_remainders, first_order_rates : ndarray
    remainders, rates : ndarray
        The remainders of order ``order`` (second-order for a gradient) and their rates.
    usable : ndarray of bool
        Which rates count: both remainders above ``noise_floor`` (round-off or solver
        noise), and not in the leading run of out-of-range rates at the largest steps
        (before the asymptotic regime).
    noise_floor : float
        Remainders at or below this are noise.
    rate_range : (float, float)
        Accepted range of the usable rates.
    min_rates : int
        How many usable rates are needed.
    min_rate, mean_rate : float
        Over the usable rates (NaN when none).
    passed : bool
        No usable rate outside ``rate_range``, and either at least ``min_rates`` usable
        rates, or fewer (at least one) followed by remainders at noise level, or every
        second-order remainder at noise level while J measurably changes (J is linear along
        dθ and the gradient predicts it to within the noise).
    note : str
        How the verdict was reached, when not plainly.
    inconclusive : bool
        J does not change measurably along dθ and the gradient predicts no change either
        (J locally constant): nothing contradicts the gradient, nothing confirms it.
        ``passed`` is True then; try another direction or point to learn more.
    order : int
        The expected rate of ``remainders`` (2 for a gradient, 3 for a Hessian).
    curvature : float
        ``dθᵀH dθ`` for ``order`` 3 (NaN otherwise).
    name : str
        The row name of :meth:`as_check` by default (``"gradient.taylor"``, ...).
    """

    steps: np.ndarray
    values: np.ndarray
    value: float
    slope: float
    first_order_remainders: np.ndarray
    first_order_rates: np.ndarray
    remainders: np.ndarray
    rates: np.ndarray
    usable: np.ndarray
    noise_floor: float
    rate_range: tuple[float, float]
    min_rates: int
    min_rate: float
    mean_rate: float
    passed: bool
    note: str = ""
    inconclusive: bool = False
    order: int = 2
    curvature: float = float("nan")
    name: str = "gradient.taylor"

    def __post_init__(self) -> None:
        for name in ("steps", "values", "first_order_remainders", "first_order_rates",
                     "remainders", "rates", "usable"):
            arr = np.array(getattr(self, name))
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def error(self) -> float:
        """Largest distance of a usable rate from the middle of ``rate_range`` (0 when the
        test passed on round-off-level remainders, NaN when there is no usable rate)."""
        if self.usable.any():
            middle = 0.5 * (self.rate_range[0] + self.rate_range[1])
            return float(np.max(np.abs(self.rates[self.usable] - middle)))
        return 0.0 if self.passed else float("nan")

    def summary(self) -> str:
        """The verdict, then one line per step: h, J, both remainders and rates."""
        lo, hi = self.rate_range
        verdict = "PASSED" if self.passed else "FAILED"
        head = (f"Taylor test {verdict} ({self.name}, order {self.order}): "
                f"{int(self.usable.sum())} usable rate(s), min "
                f"{self.min_rate:.3f}, mean {self.mean_rate:.3f}, expected in [{lo:g}, {hi:g}]"
                f" (noise floor {format_number(self.noise_floor)})")
        lines = [head] + ([f"note: {self.note}"] if self.note else [])
        lines.append(f"{'h':>10}  {'value':>22}  {'1st order':>9}  {'rate':>5}  "
                     f"{'remainder':>13}  {'rate':>5}  used")
        for k, h in enumerate(self.steps):
            rate1 = f"{self.first_order_rates[k - 1]:5.2f}" if k else " " * 5
            rate2 = f"{self.rates[k - 1]:5.2f}" if k else " " * 5
            used = ("yes" if self.usable[k - 1] else "no") if k else ""
            lines.append(f"{h:10.3e}  {self.values[k]:22.15e}  "
                         f"{format_number(self.first_order_remainders[k]):>9}  {rate1}  "
                         f"{format_number(self.remainders[k]):>13}  {rate2}  {used}")
        return "\n".join(lines)

    def as_check(self, name: str | None = None) -> CheckResult:
        """This report as a row of a :class:`VerificationReport` (named ``name``, by default
        the report's)."""
        lo, hi = self.rate_range
        rates = ", ".join(f"{r:.2f}" for r in self.rates[self.usable])
        detail = f"rates [{rates}], expected in [{lo:g}, {hi:g}]"
        if self.note:
            detail += f"; {self.note}"
        return CheckResult(name or self.name, self.passed, self.error, 0.5 * (hi - lo), detail,
                           report=self, inconclusive=self.inconclusive)


def taylor_test(fun: Callable[[np.ndarray], float], theta: Any, gradient: Any, *,
                direction: Any = None, steps: Any = None, rng: RandomLike = None,
                value: float | None = None, rate_range: tuple[float, float] = (1.9, 2.1),
                min_rates: int = 2, noise_floor: float = 0.0) -> TaylorReport:
    """Check a gradient by the convergence rate of Taylor remainders.

    ``|J(θ + h dθ) − J(θ) − h gradient·dθ|`` is O(h²) exactly when the gradient is right
    along dθ; with a wrong gradient it is O(h) (rate 1). The first-order remainders
    ``|J(θ + h dθ) − J(θ)|`` (rate 1) are reported alongside as a sanity check.

    Parameters
    ----------
    fun : callable ``theta -> J``
        Must be accurate: the remainders are small differences of J values.
    theta : array of shape (P,)
    gradient : array of shape (P,)
        dJ/dθ at θ, the gradient under test.
    direction : array of shape (P,), optional
        dθ; by default random, scaled entry-wise by ``|θ|`` so that every parameter moves
        relative to its own size (zero entries by the RMS of the others).
    steps : sequence of float, optional
        Decreasing step sizes. By default ``h₀`` with ``h₀‖dθ‖ = 1e-2·‖θ‖`` (``1e-2`` when
        θ = 0), halved 5 times.
    rng : None, int or numpy.random.Generator
        For the random direction.
    value : float, optional
        J(θ) when already known (saves one evaluation).
    rate_range : (float, float)
        Accepted range of the second-order rates.
    min_rates : int
        Usable rates needed to pass.
    noise_floor : float
        Remainders at or below ``max(noise_floor, 1e3·eps·max|J|)`` are noise and do not
        count (e.g. the error of an iterative solve inside ``fun``).

    Returns
    -------
    TaylorReport
        The leading rates at the largest steps that fall outside ``rate_range`` are taken as
        pre-asymptotic and not counted; every later rate above the noise floor counts, so a
        wrong gradient (whose rates tend to 1 as h decreases) fails.

    Examples
    --------
    >>> import numpy as np
    >>> fun = lambda th: float(np.sum(np.sin(th)))
    >>> theta = np.array([0.3, 1.2, -0.5])
    >>> taylor_test(fun, theta, np.cos(theta), rng=0).passed
    True
    >>> report = taylor_test(fun, theta, 1.01 * np.cos(theta), rng=0)  # 1% off
    >>> report.passed, round(report.rates[-1])
    (False, 1)
    """
    theta, gradient, direction, steps = _prepare(theta, gradient, direction, steps, rng)
    check_options(rate_range, min_rates)
    J0 = float(fun(theta.copy()) if value is None else value)
    values = np.array([float(fun(theta + h * direction)) for h in steps])
    return _analyse(steps, values, J0, float(gradient @ direction), float(noise_floor),
                    rate_range, min_rates)


def taylor_test_solver(solver: Any, theta: Any, *, direction: Any = None, steps: Any = None,
                       rng: RandomLike = None, rate_range: tuple[float, float] = (1.9, 2.1),
                       min_rates: int = 2) -> TaylorReport:
    """Taylor test of an :class:`~krylov_adjoint.AdjointSolver`'s gradient at θ.

    Uses ``solver.gradient(θ)`` for J(θ) and dJ/dθ, and the solver's primal solve (that of
    ``solver.objective``) for ``J(θ + h dθ)``. The remainders are small differences of J
    values, so the solves must be accurate: build the solver with a tight ``rtol`` (1e-12;
    anything looser than about 1e-10 leaves little above the noise). A solve whose true
    residual is ``r`` changes J by about ``λᵀr``, at most ``‖λ‖‖r‖``; remainders below
    ``4·‖λ‖·max‖r‖`` over the solves are treated as noise and not counted. Warm starting
    (the default) makes the perturbed solves cheap; they leave the solver's warm-start
    vectors near θ.

    Parameters
    ----------
    solver : AdjointSolver or PetscAdjointSolver
        On PETSc the test is collective and ``theta``, ``direction`` are this rank's parts;
        step sizes and the slope use global norms and inner products.
    theta : array of shape (P,)
    direction, steps, rng, rate_range, min_rates
        As in :func:`taylor_test` (under MPI an int ``rng`` seeds each rank by
        (seed, rank)).

    Returns
    -------
    TaylorReport

    Raises
    ------
    ConvergenceError
        When a solve does not converge (even if the solver does not raise on failure).

    Examples
    --------
    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                            vjp=lambda th, x, lam: lam * x)
    >>> problem = ka.AdjointProblem(op, np.ones(3), ka.LinearFunctional(np.ones(3)),
    ...                             n_params=3)
    >>> solver = ka.AdjointSolver(problem, rtol=1e-13)
    >>> taylor_test_solver(solver, np.array([1.0, 2.0, 4.0]), rng=0).passed
    True
    """
    check_options(rate_range, min_rates)
    run = solver_samples(solver, theta, direction, steps, rng)
    return _analyse(run.steps, run.values, run.result.objective,
                    dot(run.space, run.result.gradient, run.direction), run.noise, rate_range,
                    min_rates)


@dataclass(frozen=True, eq=False)
class SolverSamples:
    """J along a line through θ from a solver: the gradient at θ, the direction, the steps,
    ``J(θ + hₖ dθ)`` and the solver-noise level of J (see :func:`taylor_test_solver`)."""

    space: Any
    theta: np.ndarray
    result: Any
    direction: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    noise: float


def solver_samples(solver: Any, theta: Any, direction: Any, steps: Any, rng: RandomLike,
                   first_step: float | None = None) -> SolverSamples:
    """The gradient at θ and J at ``θ + hₖ dθ`` by converged solves (collective on PETSc).

    ``first_step`` overrides ``FIRST_STEP`` for the default steps.
    """
    space = space_of(solver.problem)
    theta = space.check_theta(theta)
    result = solver.gradient(theta)
    _raise_unless_converged(result.primal, "primal")
    _raise_unless_converged(result.adjoint_solve, "adjoint")
    theta, _, direction, steps = _prepare(theta, result.gradient, direction, steps,
                                          space.generator(rng), space, first_step)
    values, residuals = [], [result.primal.residual_norm]
    for h in steps:
        point = space.check_theta(theta + h * direction)
        primal = solver.solve(point)
        _raise_unless_converged(primal, "primal")
        values.append(space.bind(point).objective_value(primal.x))
        residuals.append(primal.residual_norm)
    noise = SOLVER_NOISE_FACTOR * norm(space, np.asarray(result.adjoint)) * max(residuals)
    return SolverSamples(space, theta, result, direction, steps, np.array(values), noise)


def _raise_unless_converged(result: SolveResult, phase: str) -> None:
    if not result.converged:
        raise ConvergenceError(result, phase)


def _prepare(theta: Any, gradient: Any, direction: Any, steps: Any, rng: RandomLike,
             space: Any = None, first_step: float | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    theta = as_float_vector(theta, "theta")
    gradient = as_float_vector(gradient, "gradient", theta.size)
    if direction is None:
        direction = scaled_direction(theta, as_generator(rng),
                                     float if space is None else space.total)
    direction = as_float_vector(direction, "direction", theta.size)
    return theta, gradient, direction, _steps(theta, direction, steps, space, first_step)


def check_options(rate_range: tuple[float, float], min_rates: int) -> None:
    lo, hi = (float(r) for r in rate_range)
    if not lo < hi:
        raise ValueError(f"rate_range must be (low, high) with low < high, got {rate_range!r}")
    if int(min_rates) < 1:
        raise ValueError(f"min_rates must be >= 1, got {min_rates!r}")


def _analyse(steps: np.ndarray, values: np.ndarray, J0: float, slope: float,
             noise_floor: float, rate_range: tuple[float, float], min_rates: int
             ) -> TaylorReport:
    """The gradient's Taylor test from the values of J: see :func:`analyse_remainders`."""
    if not (np.isfinite(J0) and np.isfinite(values).all()):
        raise ValueError(f"the function returned a non-finite value (J(θ) = {J0}, "
                         f"J(θ + h dθ) = {values})")
    return analyse_remainders(
        steps, np.abs(values - J0), np.abs(values - J0 - steps * slope),
        max(abs(J0), float(np.abs(values).max())), noise_floor, rate_range, min_rates,
        values=values, value=J0, slope=slope)


def _steps(theta: np.ndarray, direction: np.ndarray, steps: Any, space: Any,
           first_step: float | None = None) -> np.ndarray:
    if steps is None:
        size = FIRST_STEP if first_step is None else first_step
        first = (relative_step(theta, direction, size) if space is None else
                 relative_step(theta, direction, size, lambda a: norm(space, a)))
        return first * 0.5 ** np.arange(HALVINGS + 1)
    out = as_float_vector(steps, "steps")
    if out.size < 2 or not (out > 0).all() or not (np.diff(out) < 0).all():
        raise ValueError(f"steps must be at least two positive, decreasing sizes, got {out}")
    return out

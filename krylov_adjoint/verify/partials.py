"""Check the objective's partial derivatives ∂J/∂x and ∂J/∂θ against its values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import readonly
from ._random import RandomLike, as_float_vector, relative_step, scaled_direction
from .derivative import (
    FD_RELATIVE_STEP,
    FD_RTOL,
    DerivativeReport,
    central_difference,
    normalised_error,
)
from .report import CheckResult
from .space import dot, draw, norm, space_of, state_dtype

__all__ = ["ObjectiveGradientReport", "objective_gradient_test"]


@dataclass(frozen=True, eq=False)
class ObjectiveGradientReport:
    """The checks of ``objective.grad_x`` and ``objective.grad_theta``.

    Attributes
    ----------
    grad_x : DerivativeReport
        Named ``"objective.grad_x"``.
    grad_theta : DerivativeReport
        Named ``"objective.grad_theta"`` (an objective without ``grad_theta`` is checked as
        ``∂J/∂θ = 0``); skipped when P = 0.
    passed : bool
        True when both pass.
    """

    grad_x: DerivativeReport
    grad_theta: DerivativeReport
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", self.grad_x.passed and self.grad_theta.passed)

    def summary(self) -> str:
        """Two lines, one per partial derivative."""
        return self.grad_x.summary() + "\n" + self.grad_theta.summary()

    def as_checks(self) -> tuple[CheckResult, CheckResult]:
        """Both checks as rows of a :class:`VerificationReport`."""
        return self.grad_x.as_check(), self.grad_theta.as_check()


def objective_gradient_test(problem: Any, theta: Any, *, x: Any = None,
                            rng: RandomLike = None, trials: int = 3, rtol: float = FD_RTOL,
                            fd_step: float = FD_RELATIVE_STEP) -> ObjectiveGradientReport:
    """Check ∂J/∂x and ∂J/∂θ against central differences of ``objective.value``.

    For random directions ``dx`` and ``dθ`` (the latter scaled entry-wise by ``|θ|``),
    ``⟨grad_x(x, θ), dx⟩`` is compared with ``(J(x + h dx, θ) − J(x − h dx, θ)) / 2h`` and
    ``⟨grad_theta(x, θ), dθ⟩`` with the difference along θ. The error of each trial is
    ``max(|a − b| − noise, 0) / (‖g‖‖d‖ + |b|)``, ``noise`` the round-off level of the
    difference (``≈ eps·|J|/h``).

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
        θ (this rank's part under MPI, where the test is collective).
    x : array of shape (N,), optional
        The state at which to test; random Gaussian by default (new at every trial). Pass
        a physically meaningful x when J is only defined for some states.
    rng : None, int or numpy.random.Generator
    trials : int
    rtol : float
        Tolerance on the worst error (finite differences: see ``FD_RTOL``).
    fd_step : float
        Relative step: ``h‖d‖ = fd_step·‖point‖`` (``= fd_step`` at 0).

    Returns
    -------
    ObjectiveGradientReport

    Examples
    --------
    A gradient that is off by a factor 2 is caught:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> J = ka.Objective(J=lambda th, x: 0.5 * float(x @ x), dJ_dx=lambda th, x: 2 * x)
    >>> problem = ka.AdjointProblem(np.eye(3), np.ones(3), J, n_params=0)
    >>> report = objective_gradient_test(problem, np.zeros(0), rng=0)
    >>> report.grad_x.passed, report.grad_theta.skipped
    (False, True)
    """
    space = space_of(problem)
    theta = space.check_theta(theta)
    if int(trials) < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    if not fd_step > 0:
        raise ValueError(f"fd_step must be > 0, got {fd_step!r}")
    generator = space.generator(rng)
    n, p = space.n_local, space.params_local
    fixed_x = None if x is None else as_float_vector(x, "x", n)
    bound = space.bind(theta)

    def value(state: np.ndarray, point: np.ndarray | None) -> tuple[float, float]:
        at = bound if point is None else space.bind(readonly(point))
        J = at.objective_value(readonly(state))
        return J, abs(J)

    def row(g: np.ndarray, d: np.ndarray, along: Callable[[float], tuple[float, float]],
            step: float) -> tuple[float, float, float]:
        want, noise = central_difference(along, step)
        got = dot(space, g, d)
        scale = norm(space, g) * norm(space, d) + abs(want)
        return got, want, normalised_error(got, want, scale, noise)

    def step_of(base: np.ndarray, d: np.ndarray) -> float:
        return relative_step(base, d, fd_step, lambda a: norm(space, a))

    field = state_dtype(space)  # complex x and dx for a complex system: dJ = Re(gᴴdx)
    x_rows, theta_rows, x_step, theta_step = [], [], None, None
    for _ in range(int(trials)):
        state = readonly(draw(generator, n, field)) if fixed_x is None else fixed_x
        dx = draw(generator, n, field)
        x_step = step_of(state, dx)
        x_rows.append(row(bound.objective_grad_x(state), dx,
                          lambda t, s=state, d=dx: value(s + t * d, None), x_step))
        if space.n_params == 0:
            continue
        dtheta = scaled_direction(theta, generator, space.total)
        gt = bound.objective_grad_theta(state)
        theta_step = step_of(theta, dtheta)
        theta_rows.append(row(np.zeros(p) if gt is None else gt, dtheta,
                              lambda t, s=state, d=dtheta: value(s, theta + t * d),
                              theta_step))
    grad_x = _report("objective.grad_x", x_rows, rtol, x_step)
    if space.n_params == 0:
        grad_theta = DerivativeReport.skip("objective.grad_theta", "no parameters (P = 0)")
    else:
        grad_theta = _report("objective.grad_theta", theta_rows, rtol, theta_step)
    return ObjectiveGradientReport(grad_x, grad_theta)


def _report(name: str, rows: list[tuple[float, float, float]], rtol: float,
            step: float | None) -> DerivativeReport:
    got, want, errors = (np.array(col) for col in zip(*rows, strict=True))
    return DerivativeReport(name, "central difference of objective.value", got, want, errors,
                            float(rtol), step=step)

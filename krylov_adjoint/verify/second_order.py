"""Checks of each second-order callback against the first-order one it differentiates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import readonly
from .._transpose import transpose_mismatch
from ._random import RandomLike, as_float_vector, relative_step, scaled_direction
from .derivative import (
    FD_RELATIVE_STEP,
    FD_RTOL,
    DerivativeReport,
    central_difference,
    normalised_error,
)
from .report import CheckResult
from .space import dot, norm, space_of

__all__ = ["operator_vjp_jvp_test", "operator_jvp_transpose_test", "rhs_vjp_jvp_test",
           "objective_hessian_test", "ObjectiveHessianReport", "OBJECTIVE_SECOND_ORDER"]

#: The objective's second derivatives: (name, what v is like, what the output is like),
#: each checked against a central difference of ``dJ_dx`` (output like x) or ``dJ_dtheta``.
OBJECTIVE_SECOND_ORDER = (("d2J_dx2", "x", "x"), ("d2J_dxdtheta", "theta", "x"),
                          ("d2J_dthetadx", "x", "theta"), ("d2J_dtheta2", "theta", "theta"))

Pair = tuple[float, float]  # (value, the magnitude bounding the terms summed)


@dataclass(frozen=True, eq=False)
class ObjectiveHessianReport:
    """The checks of the objective's four second derivatives.

    Attributes
    ----------
    reports : tuple of DerivativeReport
        Named ``"objective.d2J_dx2"``, ``"objective.d2J_dxdtheta"``,
        ``"objective.d2J_dthetadx"``, ``"objective.d2J_dtheta2"``; skipped when not
        supplied, or when J does not depend on θ directly (then the last three vanish).
    passed : bool
        True when all pass.
    """

    reports: tuple[DerivativeReport, ...]
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", all(r.passed for r in self.reports))

    def summary(self) -> str:
        """One line per second derivative."""
        return "\n".join(r.summary() for r in self.reports)

    def as_checks(self) -> tuple[CheckResult, ...]:
        """The four checks as rows of a :class:`VerificationReport`."""
        return tuple(r.as_check() for r in self.reports)


def operator_vjp_jvp_test(problem: Any, theta: Any, *, rng: RandomLike = None,
                          trials: int = 3, rtol: float = FD_RTOL,
                          fd_step: float = FD_RELATIVE_STEP) -> DerivativeReport:
    """Check ``operator.vjp_jvp`` against a central difference of ``operator.vjp`` in θ.

    At random x, λ, dθ (scaled by ``|θ|``) and a random probe e,
    ``⟨vjp_jvp(θ, x, λ, dθ), e⟩`` is compared with the derivative of
    ``t ↦ ⟨vjp(θ + t dθ, x, λ), e⟩``; the error is that of
    :func:`~krylov_adjoint.verify.operator_vjp_test` against a finite difference.

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
        θ (this rank's part under MPI, where the test is collective).
    rng : None, int or numpy.random.Generator
    trials : int
    rtol : float
        Tolerance on the worst error (finite differences: ``FD_RTOL``).
    fd_step : float
        Relative central-difference step: ``h‖dθ‖ = fd_step·‖θ‖``.

    Returns
    -------
    DerivativeReport
        Named ``"operator.vjp_jvp"``; skipped when A does not depend on θ or the callback
        was not supplied.

    Examples
    --------
    >>> import krylov_adjoint as ka
    >>> model = ka.gallery.heat_1d(20)
    >>> operator_vjp_jvp_test(model.problem, model.theta, rng=0).passed
    True
    """
    space, theta = _space(problem, theta)
    skipped = _skip("operator.vjp_jvp", space, problem.operator.depends_on_theta,
                    "the operator does not depend on θ", problem.operator.missing_second_order)
    if skipped is not None:
        return skipped
    bound = space.bind(theta)
    n, p = space.n_local, space.params_local

    def draw(g: np.random.Generator) -> dict[str, np.ndarray]:
        return {"x": g.standard_normal(n), "lam": g.standard_normal(n),
                "d": scaled_direction(theta, g, space.total), "e": g.standard_normal(p)}

    def claimed(v: dict[str, np.ndarray]) -> Pair:
        return _pair(space, bound.operator_vjp_jvp(v["x"], v["lam"], v["d"]), v["e"])

    def along(v: dict[str, np.ndarray], t: float) -> Pair:
        point = space.bind(readonly(theta + t * v["d"]))
        return _pair(space, point.operator_vjp(v["x"], v["lam"]), v["e"])

    return _compare("operator.vjp_jvp", "central difference of operator.vjp", space, theta,
                    draw, claimed, along, rng=rng, trials=trials, rtol=rtol, fd_step=fd_step)


def rhs_vjp_jvp_test(problem: Any, theta: Any, *, rng: RandomLike = None, trials: int = 3,
                     rtol: float = FD_RTOL, fd_step: float = FD_RELATIVE_STEP
                     ) -> DerivativeReport:
    """Check ``rhs.vjp_jvp`` against a central difference of ``rhs.vjp`` in θ.

    As :func:`operator_vjp_jvp_test`, with ``t ↦ ⟨rhs.vjp(θ + t dθ, λ), e⟩``.

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
    rng, trials, rtol, fd_step
        As in :func:`operator_vjp_jvp_test`.

    Returns
    -------
    DerivativeReport
        Named ``"rhs.vjp_jvp"``; skipped when b does not depend on θ or the callback was
        not supplied.

    Examples
    --------
    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator.constant(np.eye(3), structure="spd")
    >>> rhs = ka.RightHandSide(np.sin, vjp=lambda th, lam: np.cos(th) * lam,
    ...                        jvp=lambda th, d: np.cos(th) * d,
    ...                        vjp_jvp=lambda th, lam, d: np.sin(th) * lam * d)  # sign
    >>> problem = ka.AdjointProblem(op, rhs, ka.LinearFunctional(np.ones(3)), n_params=3)
    >>> rhs_vjp_jvp_test(problem, np.array([0.3, 1.0, -0.4]), rng=0).passed
    False
    """
    space, theta = _space(problem, theta)
    skipped = _skip("rhs.vjp_jvp", space, problem.rhs.depends_on_theta,
                    "b does not depend on θ", problem.rhs.missing_second_order)
    if skipped is not None:
        return skipped
    bound = space.bind(theta)
    n, p = space.n_local, space.params_local

    def draw(g: np.random.Generator) -> dict[str, np.ndarray]:
        return {"lam": g.standard_normal(n), "d": scaled_direction(theta, g, space.total),
                "e": g.standard_normal(p)}

    def claimed(v: dict[str, np.ndarray]) -> Pair:
        return _pair(space, bound.rhs_vjp_jvp(v["lam"], v["d"]), v["e"])

    def along(v: dict[str, np.ndarray], t: float) -> Pair:
        return _pair(space, space.bind(readonly(theta + t * v["d"])).rhs_vjp(v["lam"]),
                     v["e"])

    return _compare("rhs.vjp_jvp", "central difference of rhs.vjp", space, theta, draw,
                    claimed, along, rng=rng, trials=trials, rtol=rtol, fd_step=fd_step)


def operator_jvp_transpose_test(problem: Any, theta: Any, *, rng: RandomLike = None,
                                trials: int = 3, rtol: float = 1e-12) -> DerivativeReport:
    """Dot-product test of ``operator.jvp_transpose`` against ``operator.jvp``.

    For random dθ, x and y: ``⟨(∂A/∂θ·dθ)x, y⟩ = ⟨x, (∂A/∂θ·dθ)ᵀy⟩``, the error
    :func:`~krylov_adjoint._transpose.transpose_mismatch` (as in
    :func:`~krylov_adjoint.verify.dot_test`). For an operator declared symmetric without
    ``jvp_transpose``, ``jvp`` stands in and this checks that ∂A/∂θ·dθ is symmetric.

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
    rng, trials
        As in :func:`operator_vjp_jvp_test`.
    rtol : float
        Tolerance on the worst error (round-off only).

    Returns
    -------
    DerivativeReport
        Named ``"operator.jvp_transpose"``; ``claimed`` ``⟨x, Jᵀy⟩``, ``expected``
        ``⟨J x, y⟩``. Skipped when A does not depend on θ or a callback is missing.

    Examples
    --------
    >>> import krylov_adjoint as ka
    >>> model = ka.gallery.convection_diffusion_2d(6, 5)
    >>> operator_jvp_transpose_test(model.problem, model.theta, rng=0).passed
    True
    """
    space, theta = _space(problem, theta)
    name = "operator.jvp_transpose"
    skipped = _skip(name, space, problem.operator.depends_on_theta,
                    "the operator does not depend on θ", problem.operator.missing_second_order)
    if skipped is not None:
        return skipped
    bound, n = space.bind(theta), space.n_local
    generator, rows = space.generator(rng), []
    for _ in range(_trials(trials)):
        x, y = readonly(generator.standard_normal(n)), readonly(generator.standard_normal(n))
        d = readonly(scaled_direction(theta, generator, space.total))
        Jx, JTy = bound.operator_jvp(x, d), bound.operator_jvp_transpose(y, d)
        forward, transposed = dot(space, Jx, y), dot(space, x, JTy)
        rows.append((transposed, forward, transpose_mismatch(
            forward, transposed, *(norm(space, w) for w in (Jx, y, x, JTy)))))
    got, want, errors = (np.array(col) for col in zip(*rows, strict=True))
    return DerivativeReport(name, "operator.jvp (dot-product test)", got, want, errors,
                            float(rtol))


def objective_hessian_test(problem: Any, theta: Any, *, x: Any = None, rng: RandomLike = None,
                           trials: int = 3, rtol: float = FD_RTOL,
                           fd_step: float = FD_RELATIVE_STEP) -> ObjectiveHessianReport:
    """Check the objective's ``d2J_*`` against central differences of ``dJ_dx``/``dJ_dtheta``.

    For each second derivative ∂/∂b(∂J/∂a)·v, at a random state, direction v and probe e,
    ``⟨d2J(x, θ, v), e⟩`` is compared with the derivative of ``t ↦ ⟨∂J/∂a, e⟩`` along v
    (in x or in θ).

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
    x : array of shape (N,), optional
        The state (random Gaussian at every trial by default).
    rng, trials, rtol, fd_step
        As in :func:`operator_vjp_jvp_test`.

    Returns
    -------
    ObjectiveHessianReport

    Examples
    --------
    >>> import krylov_adjoint as ka
    >>> model = ka.gallery.diffusion_2d(6, 5)
    >>> report = objective_hessian_test(model.problem, model.theta, rng=0)
    >>> [r.name for r in report.reports if not r.skipped], report.passed
    (['objective.d2J_dx2'], True)
    """
    space, theta = _space(problem, theta)
    objective, bound = problem.objective, space.bind(theta)
    fixed = None if x is None else readonly(as_float_vector(x, "x", space.n_local))
    generator = space.generator(rng)
    probe = fixed if fixed is not None else readonly(generator.standard_normal(space.n_local))
    # ∂J/∂θ is None when J does not depend on θ directly: then three terms vanish
    direct = space.n_params > 0 and bound.objective_grad_theta(probe) is not None
    sizes = {"x": space.n_local, "theta": space.params_local}
    reports = []
    for name, v_like, out_like in OBJECTIVE_SECOND_ORDER:
        qualified = f"objective.{name}"
        skipped = _skip(qualified, space, direct or name == "d2J_dx2",
                        "J does not depend on θ directly",
                        objective.missing_second_order, needs_params=name != "d2J_dx2")
        if skipped is not None:
            reports.append(skipped)
            continue
        def draw(g: np.random.Generator, v_like: str = v_like, out_like: str = out_like
                 ) -> dict[str, np.ndarray]:
            v = (g.standard_normal(sizes["x"]) if v_like == "x"
                 else scaled_direction(theta, g, space.total))
            state = g.standard_normal(sizes["x"]) if fixed is None else fixed
            return {"x": state, "d": v, "e": g.standard_normal(sizes[out_like]),
                    "base": state if v_like == "x" else theta}

        def claimed(v: dict[str, np.ndarray], name: str = name) -> Pair:
            out = bound.objective_second(name, v["x"], v["d"])
            return _pair(space, np.zeros(v["e"].size) if out is None else out, v["e"])

        def along(v: dict[str, np.ndarray], t: float, v_like: str = v_like,
                  out_like: str = out_like) -> Pair:
            at = bound if v_like == "x" else space.bind(readonly(theta + t * v["d"]))
            state = readonly(v["x"] + t * v["d"]) if v_like == "x" else v["x"]
            grad = (at.objective_grad_x(state) if out_like == "x"
                    else at.objective_grad_theta(state))
            return _pair(space, np.zeros(v["e"].size) if grad is None else grad, v["e"])

        source = "dJ_dx" if out_like == "x" else "dJ_dtheta"
        reports.append(_compare(qualified, f"central difference of objective.{source}",
                                space, theta, draw, claimed, along, rng=generator,
                                trials=trials, rtol=rtol, fd_step=fd_step))
    return ObjectiveHessianReport(tuple(reports))


# -- shared machinery ---------------------------------------------------------------------------
def _space(problem: Any, theta: Any) -> tuple[Any, np.ndarray]:
    space = space_of(problem)
    return space, space.check_theta(theta)


def _trials(trials: int) -> int:
    if int(trials) < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    return int(trials)


def _skip(name: str, space: Any, depends: bool, why_not: str, missing: tuple[str, ...],
          needs_params: bool = True) -> DerivativeReport | None:
    """The skipped report of a check with nothing to check, else None."""
    if needs_params and space.n_params == 0:
        return DerivativeReport.skip(name, "no parameters (P = 0)")
    if not depends:
        return DerivativeReport.skip(name, why_not)
    if name in missing:
        return DerivativeReport.skip(name, "not supplied")
    return None


def _pair(space: Any, a: np.ndarray, b: np.ndarray) -> Pair:
    """``(⟨a, b⟩, ‖a‖‖b‖)``, global."""
    return dot(space, a, b), norm(space, a) * norm(space, b)


def _compare(name: str, reference: str, space: Any, theta: np.ndarray,
             draw: Callable[[np.random.Generator], dict[str, np.ndarray]],
             claimed: Callable[[dict[str, np.ndarray]], Pair],
             along: Callable[[dict[str, np.ndarray], float], Pair], *, rng: RandomLike,
             trials: int, rtol: float, fd_step: float) -> DerivativeReport:
    """Compare ``claimed`` with a central difference of ``along`` in ``t`` at random draws
    (``d`` the direction; ``base`` the point it moves, θ by default)."""
    if not fd_step > 0:
        raise ValueError(f"fd_step must be > 0, got {fd_step!r}")
    generator, rows, step = space.generator(rng), [], None
    for _ in range(_trials(trials)):
        v = {key: readonly(value) for key, value in draw(generator).items()}
        got, got_scale = claimed(v)
        step = relative_step(v.get("base", theta), v["d"], fd_step, lambda a: norm(space, a))
        want, noise = central_difference(lambda t, v=v: along(v, t), step)
        rows.append((got, want, normalised_error(got, want, got_scale + abs(want), noise)))
    got_all, want_all, errors = (np.array(col) for col in zip(*rows, strict=True))
    return DerivativeReport(name, reference, got_all, want_all, errors, float(rtol), step=step)

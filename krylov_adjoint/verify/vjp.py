"""Checks of the operator's and the right-hand side's VJPs and JVPs at θ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._checks import readonly
from ._random import RandomLike, as_float_vector, relative_step, scaled_direction
from .derivative import (
    EXACT_RTOL,
    FD_RELATIVE_STEP,
    FD_RTOL,
    DerivativeReport,
    central_difference,
    normalised_error,
)
from .space import Space, dot, draw, norm, space_of, state_dtype

__all__ = ["operator_vjp_test", "operator_jvp_test", "rhs_vjp_test", "rhs_jvp_test"]

Vectors = tuple[np.ndarray, np.ndarray, np.ndarray]  # x, λ, dθ
Term = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, float]]


def operator_vjp_test(problem: Any, theta: Any, *, x: Any = None, lam: Any = None,
                      direction: Any = None, reference: str = "auto", rng: RandomLike = None,
                      trials: int = 3, rtol: float | None = None,
                      fd_step: float = FD_RELATIVE_STEP) -> DerivativeReport:
    """Check ``operator.vjp``: ⟨vjp(θ, x, λ), dθ⟩ = λᵀ(∂A/∂θ·dθ)x.

    The right-hand side comes from the operator's JVP when it has one, otherwise from a
    central difference of ``t ↦ λᵀA(θ + t dθ)x`` (see ``reference``).

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
        θ (this rank's part under MPI, where the test is collective).
    x, lam : array of shape (N,), optional
        The state and the adjoint at which to test; random Gaussian by default (new ones at
        every trial).
    direction : array of shape (P,), optional
        dθ; by default random, scaled entry-wise by ``|θ|``.
    reference : {"auto", "jvp", "fd"}
        ``"auto"`` uses the JVP when the operator has one, else the finite difference.
    rng : None, int or numpy.random.Generator
        None draws fresh vectors; an int makes the test reproducible (under MPI each rank
        draws from a generator seeded by (seed, rank)).
    trials : int
    rtol : float, optional
        Default ``EXACT_RTOL`` (1e-8) against the JVP and ``FD_RTOL`` (1e-6, looser: the
        truncation error of the difference) against a finite difference.
    fd_step : float
        Central-difference step ``h``, relative: ``h‖dθ‖ = fd_step·‖θ‖`` (``= fd_step``
        when ``θ = 0``).

    Returns
    -------
    DerivativeReport
        Named ``"operator.vjp"``; skipped when the operator does not depend on θ. The error
        is ``|a − b| / (‖vjp‖‖dθ‖ + ‖λ‖‖jvp‖)`` against the JVP, and
        ``max(|a − b| − noise, 0) / (‖vjp‖‖dθ‖ + |b|)`` against a finite difference of
        round-off level ``noise``.

    Examples
    --------
    ``A(θ) = diag(θ)``: ``λᵀ(∂A/∂θ)x = λ ⊙ x``. A sign error is caught:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> def problem(vjp):
    ...     op = ka.ParametricOperator(lambda th, x: th * x, n=4, structure="spd", vjp=vjp)
    ...     return ka.AdjointProblem(op, np.ones(4), ka.LinearFunctional(np.ones(4)),
    ...                              n_params=4)
    >>> theta = np.arange(1.0, 5.0)
    >>> operator_vjp_test(problem(lambda th, x, lam: lam * x), theta, rng=0).passed
    True
    >>> report = operator_vjp_test(problem(lambda th, x, lam: -lam * x), theta, rng=0)
    >>> report.passed, report.reference
    (False, 'central difference')
    """
    space = space_of(problem)
    theta = space.check_theta(theta)
    name = "operator.vjp"
    if not problem.operator.depends_on_theta:
        return DerivativeReport.skip(name, "the operator does not depend on θ")
    use_jvp = _use_jvp(reference, problem.operator.has_jvp, "operator.jvp")
    bound = space.bind(theta)

    def claimed(x: np.ndarray, lam: np.ndarray, d: np.ndarray) -> tuple[float, float]:
        return _pair(space, bound.operator_vjp(x, lam), d)

    exact = _operator_jvp_term(space, bound) if use_jvp else None
    return _run(name, space, theta, claimed, exact, _operator_value(space),
                exact_label="operator.jvp", x=x, lam=lam, direction=direction, rng=rng,
                trials=trials, rtol=rtol, fd_step=fd_step)


def operator_jvp_test(problem: Any, theta: Any, *, x: Any = None, lam: Any = None,
                      direction: Any = None, rng: RandomLike = None, trials: int = 3,
                      rtol: float = FD_RTOL, fd_step: float = FD_RELATIVE_STEP
                      ) -> DerivativeReport:
    """Check ``operator.jvp``: λᵀ jvp(θ, x, dθ) against a central difference of λᵀA(θ)x.

    Parameters are those of :func:`operator_vjp_test`; the reference is always the finite
    difference. Skipped when the operator does not depend on θ or has no JVP.

    Returns
    -------
    DerivativeReport
        Named ``"operator.jvp"``.

    Examples
    --------
    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator(lambda th, x: th * x, n=4, structure="spd",
    ...                            vjp=lambda th, x, lam: lam * x,
    ...                            jvp=lambda th, x, dth: 2 * dth * x)  # wrong factor 2
    >>> problem = ka.AdjointProblem(op, np.ones(4), ka.LinearFunctional(np.ones(4)),
    ...                             n_params=4)
    >>> operator_jvp_test(problem, np.ones(4), rng=0).passed
    False
    """
    space = space_of(problem)
    theta = space.check_theta(theta)
    name = "operator.jvp"
    if not problem.operator.depends_on_theta:
        return DerivativeReport.skip(name, "the operator does not depend on θ")
    if not problem.operator.has_jvp:
        return DerivativeReport.skip(name, "no operator jvp was supplied")
    return _run(name, space, theta, _operator_jvp_term(space, space.bind(theta)), None,
                _operator_value(space), x=x, lam=lam, direction=direction, rng=rng,
                trials=trials, rtol=rtol, fd_step=fd_step)


def rhs_vjp_test(problem: Any, theta: Any, *, lam: Any = None,
                 direction: Any = None, reference: str = "auto", rng: RandomLike = None,
                 trials: int = 3, rtol: float | None = None,
                 fd_step: float = FD_RELATIVE_STEP) -> DerivativeReport:
    """Check ``rhs.vjp``: ⟨vjp(θ, λ), dθ⟩ = λᵀ(∂b/∂θ)dθ.

    The reference is the right-hand side's JVP when it has one, else a central difference
    of ``t ↦ λᵀb(θ + t dθ)``; tolerances, steps and the error are as in
    :func:`operator_vjp_test`.

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
        θ (this rank's part under MPI, where the test is collective).
    lam : array of shape (N,), optional
    direction : array of shape (P,), optional
    reference : {"auto", "jvp", "fd"}
    rng, trials, rtol, fd_step
        As in :func:`operator_vjp_test`.

    Returns
    -------
    DerivativeReport
        Named ``"rhs.vjp"``; skipped when b does not depend on θ.

    Examples
    --------
    ``b(θ) = 2θ`` with a VJP that forgot the factor 2:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator.constant(np.eye(3), structure="spd")
    >>> rhs = ka.RightHandSide(lambda th: 2 * th, vjp=lambda th, lam: lam)
    >>> problem = ka.AdjointProblem(op, rhs, ka.LinearFunctional(np.ones(3)), n_params=3)
    >>> rhs_vjp_test(problem, np.ones(3), rng=0).passed
    False
    """
    space = space_of(problem)
    theta = space.check_theta(theta)
    name = "rhs.vjp"
    if not problem.rhs.depends_on_theta:
        return DerivativeReport.skip(name, "b does not depend on θ")
    use_jvp = _use_jvp(reference, problem.rhs.has_jvp, "rhs.jvp")
    bound = space.bind(theta)

    def claimed(x: np.ndarray, lam: np.ndarray, d: np.ndarray) -> tuple[float, float]:
        return _pair(space, bound.rhs_vjp(lam), d)

    exact = _rhs_jvp_term(space, bound) if use_jvp else None
    return _run(name, space, theta, claimed, exact, _rhs_value(space),
                exact_label="rhs.jvp", lam=lam, direction=direction, rng=rng, trials=trials,
                rtol=rtol, fd_step=fd_step)


def rhs_jvp_test(problem: Any, theta: Any, *, lam: Any = None,
                 direction: Any = None, rng: RandomLike = None, trials: int = 3,
                 rtol: float = FD_RTOL, fd_step: float = FD_RELATIVE_STEP
                 ) -> DerivativeReport:
    """Check ``rhs.jvp``: λᵀ jvp(θ, dθ) against a central difference of λᵀb(θ).

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
        θ (this rank's part under MPI, where the test is collective).
    lam, direction, rng, trials, rtol, fd_step
        As in :func:`rhs_vjp_test`.

    Returns
    -------
    DerivativeReport
        Named ``"rhs.jvp"``; skipped when b does not depend on θ or has no JVP.

    Examples
    --------
    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator.constant(np.eye(3), structure="spd")
    >>> rhs = ka.RightHandSide(lambda th: th**2, vjp=lambda th, lam: 2 * th * lam,
    ...                        jvp=lambda th, dth: 2 * th * dth)
    >>> problem = ka.AdjointProblem(op, rhs, ka.LinearFunctional(np.ones(3)), n_params=3)
    >>> rhs_jvp_test(problem, np.array([1.0, -2.0, 3.0]), rng=0).passed
    True
    """
    space = space_of(problem)
    theta = space.check_theta(theta)
    name = "rhs.jvp"
    if not problem.rhs.depends_on_theta:
        return DerivativeReport.skip(name, "b does not depend on θ")
    if not problem.rhs.has_jvp:
        return DerivativeReport.skip(name, "no rhs jvp was supplied")
    return _run(name, space, theta, _rhs_jvp_term(space, space.bind(theta)), None,
                _rhs_value(space), lam=lam, direction=direction, rng=rng, trials=trials,
                rtol=rtol, fd_step=fd_step)


# -- shared machinery ---------------------------------------------------------------------
def _use_jvp(reference: str, available: bool, label: str) -> bool:
    if reference not in ("auto", "jvp", "fd"):
        raise ValueError(f"reference must be 'auto', 'jvp' or 'fd', got {reference!r}")
    if reference == "jvp" and not available:
        raise ValueError(f"reference='jvp' but no {label} was supplied")
    return available if reference == "auto" else reference == "jvp"


def _pair(space: Space, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(⟨a, b⟩, ‖a‖‖b‖)``, global."""
    return dot(space, a, b), norm(space, a) * norm(space, b)


def _operator_jvp_term(space: Space, bound: Any) -> Term:
    def term(x: np.ndarray, lam: np.ndarray, d: np.ndarray) -> tuple[float, float]:
        return _pair(space, lam, bound.operator_jvp(x, d))
    return term


def _rhs_jvp_term(space: Space, bound: Any) -> Term:
    def term(x: np.ndarray, lam: np.ndarray, d: np.ndarray) -> tuple[float, float]:
        return _pair(space, lam, bound.rhs_jvp(d))
    return term


Value = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, float]]


def _operator_value(space: Space) -> Value:
    """``(λᵀA(θ')x, ‖λ‖‖A(θ')x‖)`` at a perturbed θ'."""
    def value(point: np.ndarray, x: np.ndarray, lam: np.ndarray) -> tuple[float, float]:
        return _pair(space, lam, space.bind(point).matvec(x, check_finite=True))
    return value


def _rhs_value(space: Space) -> Value:
    """``(λᵀb(θ'), ‖λ‖‖b(θ')‖)`` at a perturbed θ'."""
    def value(point: np.ndarray, x: np.ndarray, lam: np.ndarray) -> tuple[float, float]:
        return _pair(space, lam, space.bind(point).b())
    return value


def _run(name: str, space: Space, theta: np.ndarray, claimed: Term,
         exact: Term | None, value: Value, *, exact_label: str = "", x: Any = None,
         lam: Any = None, direction: Any = None, rng: RandomLike, trials: int,
         rtol: float | None, fd_step: float) -> DerivativeReport:
    """Compare ``claimed`` with ``exact`` (or with a central difference of ``value``)."""
    if int(trials) < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    if space.n_params == 0:
        return DerivativeReport.skip(name, "no parameters (P = 0)")
    if not fd_step > 0:
        raise ValueError(f"fd_step must be > 0, got {fd_step!r}")
    generator = space.generator(rng)
    n, p = space.n_local, space.params_local
    fixed_x = None if x is None else as_float_vector(x, "x", n)
    fixed_lam = None if lam is None else as_float_vector(lam, "lam", n)
    fixed_d = None if direction is None else as_float_vector(direction, "direction", p)
    tolerance = float(rtol if rtol is not None else EXACT_RTOL if exact else FD_RTOL)
    field = state_dtype(space)  # complex x and λ for a complex system
    rows, step = [], None
    for _ in range(int(trials)):
        xs = readonly(draw(generator, n, field)) if fixed_x is None else fixed_x
        lams = readonly(draw(generator, n, field)) if fixed_lam is None else fixed_lam
        d = fixed_d if fixed_d is not None else readonly(
            scaled_direction(theta, generator, space.total))
        got, got_scale = claimed(xs, lams, d)
        if exact is not None:
            want, want_scale = exact(xs, lams, d)
            noise = 0.0
        else:
            step = relative_step(theta, d, fd_step, lambda a: norm(space, a))

            def along(t: float, xs: np.ndarray = xs, lams: np.ndarray = lams,
                      d: np.ndarray = d) -> tuple[float, float]:
                return value(readonly(theta + t * d), xs, lams)

            want, noise = central_difference(along, step)
            want_scale = abs(want)
        rows.append((got, want, normalised_error(got, want, got_scale + want_scale, noise)))
    got_all, want_all, errors = (np.array(col) for col in zip(*rows, strict=True))
    label = exact_label if exact is not None else "central difference"
    return DerivativeReport(name, label, got_all, want_all, errors, tolerance,
                            step=None if exact is not None else step)

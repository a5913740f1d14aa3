"""Checks of a solver's Hessian actions: Taylor tests of order 3 and 2, and symmetry."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import readonly
from ..errors import ConvergenceError
from ._random import RandomLike, as_float_vector, scaled_direction
from ._remainders import analyse_remainders
from .dot import DotTestReport, dot_trials
from .space import dot, norm, space_of
from .taylor import (
    TaylorReport,
    _prepare,
    _raise_unless_converged,
    check_options,
    solver_samples,
)

__all__ = ["second_order_taylor_test", "hessian_gradient_test", "hessian_symmetry_test",
           "HESSIAN_FIRST_STEP"]

#: First step of the third-order Taylor test: ``h₀‖dθ‖ = HESSIAN_FIRST_STEP·‖θ‖``. Larger
#: than the gradient's, since the remainders fall like h³ and reach the noise sooner (with
#: 4e-2 the third-order remainders of the Bayesian example were all at noise level).
HESSIAN_FIRST_STEP = 2e-1


def second_order_taylor_test(solver: Any, theta: Any, *, direction: Any = None,
                             steps: Any = None, rng: RandomLike = None,
                             rate_range: tuple[float, float] = (2.9, 3.1),
                             min_rates: int = 2) -> TaylorReport:
    """Taylor test of a solver's Hessian action: the remainders fall like h³.

    With ``g = solver.gradient(θ)`` and ``H dθ = solver.hessian_vector_product(θ, dθ)``,
    ``|J(θ + h dθ) − J(θ) − h g·dθ − ½h² dθᵀH dθ|`` is O(h³) when both are right along dθ;
    a wrong curvature ``dθᵀH dθ`` leaves O(h²) (rate 2). The first-order remainders
    ``|J(θ + h dθ) − J(θ)|`` are reported alongside. Noise floor, usable rates and verdict
    are those of :func:`~krylov_adjoint.verify.taylor_test_solver`; the solves must be
    accurate (``rtol=1e-12``).

    Parameters
    ----------
    solver : AdjointSolver or PetscAdjointSolver
        With the second-order callbacks (collective on PETSc: ``theta``, ``direction`` are
        this rank's parts, norms and inner products global).
    theta : array of shape (P,)
    direction : array of shape (P,), optional
        dθ; by default random, scaled entry-wise by ``|θ|``.
    steps : sequence of float, optional
        Decreasing steps; by default ``h₀‖dθ‖ = HESSIAN_FIRST_STEP·‖θ‖``, halved 5 times.
    rng : None, int or numpy.random.Generator
        For the random direction (under MPI an int seeds each rank by (seed, rank)).
    rate_range : (float, float)
        Accepted range of the third-order rates.
    min_rates : int
        Usable rates needed to pass.

    Returns
    -------
    TaylorReport
        ``order`` 3, ``curvature`` ``dθᵀH dθ``, named ``"hessian.taylor"``.

    Raises
    ------
    ConvergenceError
        When a solve does not converge.

    Examples
    --------
    >>> import krylov_adjoint as ka
    >>> model = ka.gallery.heat_1d(20)
    >>> solver = ka.AdjointSolver(model.problem, rtol=1e-13)
    >>> report = second_order_taylor_test(solver, model.theta, rng=0)
    >>> report.passed, report.order
    (True, 3)
    """
    check_options(rate_range, min_rates)
    space, theta, direction = _point_and_direction(solver, theta, direction, rng)
    action = _product(solver, theta, direction, gauss_newton=False)
    run = solver_samples(solver, theta, direction, steps, None, HESSIAN_FIRST_STEP)
    J0, values = run.result.objective, run.values
    slope = dot(space, run.result.gradient, direction)
    curvature = dot(space, action, direction)
    if not (np.isfinite(J0) and np.isfinite(values).all() and np.isfinite(curvature)):
        raise ValueError(f"non-finite J or curvature (J(θ) = {J0}, J(θ + h dθ) = {values}, "
                         f"dθᵀH dθ = {curvature})")
    steps = run.steps
    change = values - J0
    return analyse_remainders(
        steps, np.abs(change), np.abs(change - steps * slope - 0.5 * steps**2 * curvature),
        max(abs(J0), float(np.abs(values).max())), run.noise, rate_range, min_rates,
        values=values, value=J0, slope=slope, order=3, curvature=curvature,
        name="hessian.taylor", predictor="the second-order expansion")


def hessian_gradient_test(solver: Any, theta: Any, *, direction: Any = None,
                          steps: Any = None, rng: RandomLike = None,
                          rate_range: tuple[float, float] = (1.9, 2.1), min_rates: int = 2,
                          noise_floor: float = 0.0) -> TaylorReport:
    """Taylor test of the Hessian action against the gradient: remainders fall like h².

    ``‖g(θ + h dθ) − g(θ) − h H dθ‖`` is O(h²) when ``H dθ =
    solver.hessian_vector_product(θ, dθ)`` is the derivative of the gradient along dθ; a
    wrong action leaves O(h) (rate 1). The norms are global on PETSc. Unlike the
    third-order test this checks every component of H dθ, not only ``dθᵀH dθ``.

    Parameters
    ----------
    solver : AdjointSolver or PetscAdjointSolver
    theta : array of shape (P,)
    direction, steps, rng, rate_range, min_rates
        As in :func:`~krylov_adjoint.verify.taylor_test_solver`.
    noise_floor : float
        Remainders at or below ``max(noise_floor, 1e3·eps·max‖g‖)`` are noise (raise it for
        an ill-conditioned A, whose gradients are accurate to about ``κ·rtol``).

    Returns
    -------
    TaylorReport
        Named ``"hessian.gradient"``, on norms: ``values`` ``‖g(θ + hₖ dθ)‖``, ``value``
        ``‖g(θ)‖``, ``slope`` ``‖H dθ‖``.

    Examples
    --------
    >>> import krylov_adjoint as ka
    >>> model = ka.gallery.heat_1d(20)
    >>> solver = ka.AdjointSolver(model.problem, rtol=1e-13)
    >>> hessian_gradient_test(solver, model.theta, rng=0).passed
    True
    """
    check_options(rate_range, min_rates)
    space, theta, direction = _point_and_direction(solver, theta, direction, rng)
    action = _product(solver, theta, direction, gauss_newton=False)
    g0 = _gradient(solver, theta)
    _, _, _, steps = _prepare(theta, g0, direction, steps, None, space)
    gradients = [_gradient(solver, space.check_theta(theta + h * direction)) for h in steps]
    first = np.array([norm(space, g - g0) for g in gradients])
    remainders = np.array([norm(space, g - g0 - h * action)
                           for g, h in zip(gradients, steps, strict=True)])
    values = np.array([norm(space, g) for g in gradients])
    if not (np.isfinite(values).all() and np.isfinite(remainders).all()):
        raise ValueError("non-finite gradient or Hessian action")
    g0_norm = norm(space, g0)
    return analyse_remainders(
        steps, first, remainders, max(g0_norm, float(values.max())), float(noise_floor),
        rate_range, min_rates, values=values, value=g0_norm, slope=norm(space, action),
        name="hessian.gradient", predictor="the Hessian action", quantity="the gradient")


def hessian_symmetry_test(solver: Any, theta: Any, *, gauss_newton: bool = False,
                          rng: RandomLike = None, trials: int = 3,
                          rtol: float = 1e-8) -> DotTestReport:
    """Check that the Hessian action is symmetric: ⟨v, H w⟩ = ⟨w, H v⟩.

    For random v and w the error is
    ``|⟨H w, v⟩ − ⟨w, H v⟩| / (‖H w‖‖v‖ + ‖w‖‖H v‖)`` (the dot-product measure,
    :func:`~krylov_adjoint.verify.dot_test`), global on PETSc. A wrong
    ``operator.jvp_transpose`` or a mismatch of ``objective.d2J_dxdtheta`` and
    ``objective.d2J_dthetadx`` breaks the symmetry; a wrong sign of a term that is itself
    symmetric (``operator.vjp_jvp``, ``objective.d2J_dx2``) does not: the Taylor tests find
    those. The tolerance is looser than for a matrix product: each action takes two
    iterative solves (use ``rtol=1e-12`` in the solver).

    Parameters
    ----------
    solver : AdjointSolver or PetscAdjointSolver
    theta : array of shape (P,)
        θ (this rank's part under MPI, where the test is collective).
    gauss_newton : bool
        Test ``solver.gauss_newton_vector_product`` instead.
    rng : None, int or numpy.random.Generator
    trials : int
    rtol : float
        Tolerance on the worst error.

    Returns
    -------
    DotTestReport
        Named ``"hessian.symmetry"`` (``"gauss_newton.symmetry"``).

    Examples
    --------
    >>> import krylov_adjoint as ka
    >>> model = ka.gallery.heat_1d(20)
    >>> solver = ka.AdjointSolver(model.problem, rtol=1e-13)
    >>> hessian_symmetry_test(solver, model.theta, rng=0).passed
    True
    """
    space = space_of(solver.problem)
    theta = space.check_theta(theta)
    p = space.params_local

    def apply(v: np.ndarray) -> np.ndarray:
        return _product(solver, theta, readonly(v), gauss_newton=gauss_newton)

    errors = dot_trials(space, apply, apply, lambda g: g.standard_normal(p),
                        lambda g: g.standard_normal(p), space.generator(rng), trials)
    name = "gauss_newton.symmetry" if gauss_newton else "hessian.symmetry"
    return DotTestReport(name, (space.n_params, space.n_params), errors, float(rtol))


def _point_and_direction(solver: Any, theta: Any, direction: Any, rng: RandomLike
                         ) -> tuple[Any, np.ndarray, np.ndarray]:
    space = space_of(solver.problem)
    theta = space.check_theta(theta)
    if direction is None:
        direction = scaled_direction(theta, space.generator(rng), space.total)
    return space, theta, as_float_vector(direction, "direction", theta.size)


def _product(solver: Any, theta: np.ndarray, direction: np.ndarray, *,
             gauss_newton: bool) -> np.ndarray:
    """H dθ (or the Gauss–Newton action), refusing unconverged solves."""
    method = (solver.gauss_newton_vector_product if gauss_newton
              else solver.hessian_vector_product)
    result = method(theta, direction)
    for solve, phase in ((result.tangent_solve, "tangent"),
                         (result.adjoint_solve, "second-order adjoint")):
        if not solve.converged:
            raise ConvergenceError(solve, phase)
    return np.array(result.product, dtype=float)


def _gradient(solver: Any, theta: np.ndarray) -> np.ndarray:
    result = solver.gradient(theta)
    _raise_unless_converged(result.primal, "primal")
    _raise_unless_converged(result.adjoint_solve, "adjoint")
    return np.array(result.gradient, dtype=float)

"""Hessian and Gauss–Newton actions on the engine: forward over reverse, two more solves.

The tangent solve with A and M and the second-order adjoint solve with Aᵀ and Mᵀ reuse x, λ and
the preconditioner set-up of the gradient at θ; the formulas are
:meth:`~krylov_adjoint.problem.bound.BoundProblem.hessian_action` and docs/method.md.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import ConvergenceError, InputError, MissingCallbackError
from .result import HessianResult

__all__ = ["hessian_action", "require_second_order"]


def hessian_action(engine: Any, theta: Any, dtheta: Any, *, gauss_newton: bool
                   ) -> HessianResult:
    """See :meth:`~krylov_adjoint.adjoint.engine.GradientEngine.hessian_vector_product`."""
    start = time.perf_counter()
    require_second_order(engine, gauss_newton)
    times: dict[str, float] = {}
    bound, reused = engine._bind(theta, {}), True
    state = engine._gradient_state
    if state is None or state[0] is not bound:
        tick = time.perf_counter()
        result = engine.gradient(theta)
        times["gradient"], reused = time.perf_counter() - tick, False
        state = engine._gradient_state
        if state is None:  # raise_on_failure=False and a solve failed
            failed = result.primal if not result.primal.converged else result.adjoint_solve
            raise ConvergenceError(failed, "primal" if failed is result.primal
                                   else "adjoint")
    else:
        times["gradient"] = 0.0
    assert state is not None
    bound, x, lam = state
    backend = engine.backend
    direction = backend.check_direction(dtheta)
    tick = time.perf_counter()
    xdot, tangent_solve = engine._tangent(bound, x, direction)
    times["tangent"] = time.perf_counter() - tick
    tick = time.perf_counter()
    rhs = backend.second_adjoint_rhs(bound, x, xdot, lam, direction,
                                     gauss_newton=gauss_newton)
    lamdot, adjoint_solve = engine._solve("second_adjoint", bound, rhs,
                                        engine._adjoint_settings(phase="second_adjoint"), x0=None)
    times["adjoint"] = time.perf_counter() - tick
    tick = time.perf_counter()
    product = backend.hessian_action(bound, x, xdot, lam, lamdot, direction,
                                     gauss_newton=gauss_newton)
    times["product"] = time.perf_counter() - tick
    times["total"] = time.perf_counter() - start
    return backend.hessian_result(
        product=product, tangent=xdot, second_adjoint=lamdot, tangent_solve=tangent_solve,
        adjoint_solve=adjoint_solve, gauss_newton=gauss_newton, times=times,
        gradient_reused=reused)

def require_second_order(engine: Any, gauss_newton: bool) -> None:
    """Raise naming every callback the action needs and the problem lacks."""
    problem = engine.backend.problem  # type: ignore[attr-defined]
    if np.dtype(getattr(problem, "dtype", np.float64)).kind == "c":
        raise InputError("dtype", "Hessian and Gauss–Newton actions of a complex system are "
                                  "not supported: gradients, directional derivatives and "
                                  "Jacobians are")
    attribute = "missing_gauss_newton" if gauss_newton else "missing_second_order"
    missing = [name for part in (problem.operator, problem.rhs, problem.objective)
               for name in getattr(part, attribute, ())]
    if not missing:
        return
    what = "gauss_newton_vector_product" if gauss_newton else "hessian_vector_product"
    hint = "" if gauss_newton else (
        "; gauss_newton_vector_product needs only the JVPs and the objective's second "
        "derivatives")
    raise MissingCallbackError(f"{what} needs {', '.join(missing)}, which the problem "
                               f"does not supply{hint}")

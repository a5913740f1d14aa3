"""Run every verification on a problem at θ and collect one report."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..errors import CallbackError, ConvergenceError, KrylovAdjointError, NonFiniteError
from ..precond.base import IdentityPreconditioner
from ._random import RandomLike
from .dot import operator_dot_test, preconditioner_dot_test
from .hessian import hessian_gradient_test, hessian_symmetry_test, second_order_taylor_test
from .partials import objective_gradient_test
from .report import CheckResult, VerificationReport
from .second_order import (
    objective_hessian_test,
    operator_jvp_transpose_test,
    operator_vjp_jvp_test,
    rhs_vjp_jvp_test,
)
from .space import SerialSpace, space_of
from .taylor import taylor_test_solver
from .vjp import operator_jvp_test, operator_vjp_test, rhs_jvp_test, rhs_vjp_test

__all__ = ["check_problem", "TAYLOR_RTOLS", "HESSIAN_ROWS"]

#: Relative tolerances tried, in order, for the solves behind the Taylor test of
#: :func:`check_problem`: the first the solves reach is used.
TAYLOR_RTOLS = (1e-12, 1e-10)


def check_problem(problem: Any, theta: Any, *, solver: Any = None,
                  preconditioner: Any = None, taylor: bool = True,
                  second_order: bool | None = None,
                  rng: RandomLike = None, trials: int = 3) -> VerificationReport:
    """Verify every callback of a problem at θ, then the whole gradient.

    The checks, each named after the callback it tests:

    - ``operator.rmatvec``: dot-product test against ``operator.matvec``;
    - ``operator.jvp`` (when supplied): against a central difference of λᵀA(θ)x;
    - ``operator.vjp``: against the JVP when that passed, else a central difference;
    - ``rhs.jvp`` and ``rhs.vjp``: the same for b(θ);
    - ``objective.grad_x`` and ``objective.grad_theta``: against central differences of
      ``objective.value`` at random states;
    - ``preconditioner.apply_transpose``: dot-product test against ``apply``, when a
      preconditioner is given or the solver has one;
    - ``gradient.taylor``: Taylor test of dJ/dθ from an :class:`~krylov_adjoint.AdjointSolver`
      with ``rtol = 1e-12`` (1e-10 when the solves cannot reach 1e-12), with the same method
      and preconditioner as ``solver`` when given (a new solver: ``solver`` is left
      untouched).

    Then, with ``second_order`` (by default when the problem supplies any second-order
    callback; each row skipped, with the reason, when its callbacks are not supplied: a
    missing one is named "not supplied"):

    - ``operator.vjp_jvp``, ``rhs.vjp_jvp``: against central differences of the VJPs in θ;
    - ``operator.jvp_transpose``: dot-product test against ``operator.jvp``;
    - ``objective.d2J_dx2``, ``objective.d2J_dxdtheta``, ``objective.d2J_dthetadx``,
      ``objective.d2J_dtheta2``: against central differences of ``grad_x``/``grad_theta``;
    - ``hessian.taylor`` (rate 3), ``hessian.gradient`` (rate 2), ``hessian.symmetry`` and
      ``gauss_newton.symmetry``: the solver's Hessian actions, with the Taylor test's solver
      (when ``taylor``).

    A check that stops on an error (a callback returning a wrong shape, NaN, a solve that
    does not converge) fails and is named after the culprit callback when known.

    On a ``DistributedProblem`` the checks are collective (call on every rank with this
    rank's part of θ) and every rank gets the same report; the preconditioner checked is
    the PETSc PC of the Taylor test's solver (``solver``'s PC type, or ``preconditioner``
    as a PC type name), tested after the Taylor test.

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
        θ (this rank's part under MPI).
    solver : AdjointSolver or PetscAdjointSolver, optional
        Its method and preconditioner are used for the Taylor test, and its preconditioner
        (the one set up, or one set up at θ the same way) is dot-tested.
    preconditioner : Preconditioner, str or callable, optional
        A preconditioner object, or a kind (``"jacobi"``, ``"ilu"``, ``"amg"``, or a callable
        ``A -> Preconditioner``) set up on ``problem.assemble(θ)``. Takes precedence over
        the solver's.
    taylor : bool
        Run the Taylor test (it costs one gradient and six primal solves), and with
        ``second_order`` the Hessian's Taylor and symmetry tests (about twenty solves).
    second_order : bool, optional
        Check the second-order callbacks and the Hessian actions. By default (None) when the
        problem supplies any of ``operator.vjp_jvp``, ``rhs.vjp_jvp`` or the objective's
        ``d2J_dx2``, so that a first-order problem's report has no second-order rows.
    rng : None, int or numpy.random.Generator
        Source of all random vectors; a seed makes the report reproducible (under MPI each
        rank draws from a generator seeded by (seed, rank)).
    trials : int
        Random trials of each dot-product and derivative test.

    Returns
    -------
    VerificationReport

    Raises
    ------
    InputError
        When θ itself is unusable (wrong length, NaN).

    Examples
    --------
    ``A(θ) = diag(θ)`` with a VJP that has a sign error:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                            vjp=lambda th, x, lam: -lam * x)
    >>> problem = ka.AdjointProblem(op, np.ones(3), ka.LinearFunctional(np.ones(3)),
    ...                             n_params=3)
    >>> report = check_problem(problem, np.array([1.0, 2.0, 4.0]), rng=0)
    >>> report.passed, report.failures
    (False, ('operator.vjp', 'gradient.taylor'))
    """
    space = space_of(problem)
    theta = space.check_theta(theta)
    generator = space.generator(rng)
    checks: list[CheckResult] = []

    def run(name: str, check: Callable[[], Any]) -> Any:
        try:
            report = check()
        except KrylovAdjointError as exc:
            checks.append(_failure(name, exc))
            return None
        if hasattr(report, "as_checks"):
            checks.extend(report.as_checks())
        else:
            checks.append(report.as_check())
        return report

    options = {"rng": generator, "trials": trials}
    run("operator.rmatvec", lambda: operator_dot_test(problem, theta, **options))
    jvp = run("operator.jvp", lambda: operator_jvp_test(problem, theta, **options))
    reference = "jvp" if jvp is not None and jvp.passed and not jvp.skipped else "fd"
    run("operator.vjp", lambda: operator_vjp_test(problem, theta, reference=reference,
                                                  **options))
    jvp = run("rhs.jvp", lambda: rhs_jvp_test(problem, theta, **options))
    reference = "jvp" if jvp is not None and jvp.passed and not jvp.skipped else "fd"
    run("rhs.vjp", lambda: rhs_vjp_test(problem, theta, reference=reference, **options))
    run("objective.grad_x", lambda: objective_gradient_test(problem, theta, **options))
    if second_order is None:
        second_order = _supplies_second_order(problem)
    if second_order:
        run("operator.vjp_jvp", lambda: operator_vjp_jvp_test(problem, theta, **options))
        run("operator.jvp_transpose",
            lambda: operator_jvp_transpose_test(problem, theta, **options))
        run("rhs.vjp_jvp", lambda: rhs_vjp_jvp_test(problem, theta, **options))
        run("objective.d2J_dx2", lambda: objective_hessian_test(problem, theta, **options))

    M = None
    try:
        M = space.checked_preconditioner(theta, solver, preconditioner)
    except (KrylovAdjointError, ValueError, TypeError) as exc:
        checks.append(_failure("preconditioner", exc))
    distributed = not isinstance(space, SerialSpace)
    if M is not None and not distributed and not isinstance(M, IdentityPreconditioner):
        run("preconditioner.apply_transpose", lambda: preconditioner_dot_test(M, **options))
    if taylor and space.n_params == 0:
        checks.extend(CheckResult(name, True, float("nan"), float("nan"),
                                  "no parameters (P = 0)", skipped=True)
                      for name in ("gradient.taylor", *(HESSIAN_ROWS if second_order else ())))
    elif taylor or (distributed and M is not None):
        checks.extend(_taylor_check(space, theta, solver, M, generator, taylor,
                                    taylor and second_order, options))
    return VerificationReport(tuple(checks))


def _taylor_check(space: Any, theta: Any, solver: Any, M: Any, rng: Any, taylor: bool,
                  hessian: bool, options: dict[str, Any]) -> list[CheckResult]:
    """The Taylor test with solves at ``TAYLOR_RTOLS[0]``, or at the next tolerance when the
    solves cannot reach it (an ill-conditioned operator's attainable accuracy); on PETSc,
    then the dot-product test of that solver's preconditioner."""
    failed: list[str] = []
    last: KrylovAdjointError | None = None
    for rtol in TAYLOR_RTOLS:
        tight = space.new_solver(solver, M, rtol)
        try:
            if not taylor:
                tight.solve(theta)
                return _preconditioner_check(space, tight, options)
            report = taylor_test_solver(tight, theta, rng=rng)
        except (ConvergenceError, NonFiniteError) as exc:
            failed.append(f"{rtol:g}")
            last = exc
            _destroy(tight)
            continue
        except KrylovAdjointError as exc:
            _destroy(tight)
            return [_failure("gradient.taylor", exc)]
        row = report.as_check()
        if failed:
            row = dataclasses.replace(row, detail=f"{row.detail}; solves at rtol "
                                      f"{', '.join(failed)} failed, used rtol {rtol:g}")
        rows = _hessian_checks(space, tight, theta, rng, options) if hessian else []
        return [row, *rows, *_preconditioner_check(space, tight, options)]
    assert last is not None
    return [_failure("gradient.taylor", last)]


def _supplies_second_order(problem: Any) -> bool:
    """Whether the problem supplies any second-order callback (one that applies to it)."""
    parts = ((problem.operator, "operator.vjp_jvp"), (problem.rhs, "rhs.vjp_jvp"),
             (problem.objective, "objective.d2J_dx2"))
    return any(part.depends_on_theta and name not in part.missing_second_order
               if hasattr(part, "depends_on_theta") else name not in part.missing_second_order
               for part, name in parts)


#: The rows of the checks of the solver's Hessian actions, in order.
HESSIAN_ROWS = ("hessian.taylor", "hessian.gradient", "hessian.symmetry",
                "gauss_newton.symmetry")


def _hessian_checks(space: Any, solver: Any, theta: Any, rng: Any,
                    options: dict[str, Any]) -> list[CheckResult]:
    """The Taylor tests (rates 3 and 2) and the symmetry tests of the Hessian actions, each
    skipped when the problem lacks a callback it needs (naming them)."""
    problem = space.problem
    parts = (problem.operator, problem.rhs, problem.objective)
    missing = [name for part in parts for name in part.missing_second_order]
    missing_gn = [name for part in parts for name in part.missing_gauss_newton]
    checks: dict[str, Callable[[], Any]] = {
        "hessian.taylor": lambda: second_order_taylor_test(solver, theta, rng=rng),
        "hessian.gradient": lambda: hessian_gradient_test(solver, theta, rng=rng),
        "hessian.symmetry": lambda: hessian_symmetry_test(solver, theta, **options),
        "gauss_newton.symmetry": lambda: hessian_symmetry_test(solver, theta,
                                                               gauss_newton=True, **options)}
    rows = []
    for name, check in checks.items():
        lacking = missing_gn if name.startswith("gauss_newton") else missing
        if lacking:
            rows.append(CheckResult(name, True, float("nan"), float("nan"),
                                    f"needs {', '.join(lacking)}: not supplied",
                                    skipped=True))
            continue
        try:
            rows.append(check().as_check())
        except KrylovAdjointError as exc:
            rows.append(_failure(name, exc))
    return rows


def _preconditioner_check(space: Any, solver: Any, options: dict[str, Any]
                          ) -> list[CheckResult]:
    """On PETSc, the dot-product test of the solver's (set-up) PC; nothing serially."""
    if isinstance(space, SerialSpace) or solver.pc_type == "none":
        _destroy(solver)
        return []
    try:
        return [preconditioner_dot_test(solver, **options).as_check()]
    except KrylovAdjointError as exc:
        return [_failure("preconditioner.apply_transpose", exc)]
    finally:
        _destroy(solver)


def _destroy(solver: Any) -> None:
    destroy = getattr(solver, "destroy", None)
    if destroy is not None:
        destroy()


def _failure(name: str, exc: Exception) -> CheckResult:
    culprit = exc.callback if isinstance(exc, CallbackError) else name
    if isinstance(exc, ConvergenceError):
        detail = f"{exc.phase} solve: {exc.result.reason.name} ({exc.result.message})"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    if culprit != name:
        detail = f"while checking {name}: {detail}"
    return CheckResult(culprit, False, float("nan"), float("nan"), detail)

"""Run every verification on a problem at θ and collect one report."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..adjoint.solver import AdjointSolver
from ..errors import CallbackError, ConvergenceError, KrylovAdjointError, NonFiniteError
from ..precond.base import IdentityPreconditioner
from ..precond.factory import make_preconditioner
from ..problem.problem import AdjointProblem
from ._random import RandomLike, as_generator
from .dot import operator_dot_test, preconditioner_dot_test
from .partials import objective_gradient_test
from .report import CheckResult, VerificationReport
from .taylor import taylor_test_solver
from .vjp import operator_jvp_test, operator_vjp_test, rhs_jvp_test, rhs_vjp_test

__all__ = ["check_problem", "TAYLOR_RTOLS"]

#: Relative tolerances tried, in order, for the solves behind the Taylor test of
#: :func:`check_problem`: the first the solves reach is used.
TAYLOR_RTOLS = (1e-12, 1e-10)


def check_problem(problem: AdjointProblem, theta: Any, *, solver: AdjointSolver | None = None,
                  preconditioner: Any = None, taylor: bool = True, rng: RandomLike = None,
                  trials: int = 3) -> VerificationReport:
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

    A check that stops on an error (a callback returning a wrong shape, NaN, a solve that
    does not converge) fails and is named after the culprit callback when known.

    Parameters
    ----------
    problem : AdjointProblem
    theta : array of shape (P,)
    solver : AdjointSolver, optional
        Its method and preconditioner are used for the Taylor test, and its preconditioner
        (the one set up, or one set up at θ the same way) is dot-tested.
    preconditioner : Preconditioner, str or callable, optional
        A preconditioner object, or a kind (``"jacobi"``, ``"ilu"``, ``"amg"``, or a callable
        ``A -> Preconditioner``) set up on ``problem.assemble(θ)``. Takes precedence over
        the solver's.
    taylor : bool
        Run the Taylor test (it costs one gradient and six primal solves).
    rng : None, int or numpy.random.Generator
        Source of all random vectors; a seed makes the report reproducible.
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
    theta = problem.check_theta(theta)
    generator = as_generator(rng)
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

    M = None
    try:
        M = _preconditioner(problem, theta, solver, preconditioner)
    except (KrylovAdjointError, ValueError, TypeError) as exc:
        checks.append(_failure("preconditioner", exc))
    if M is not None and not isinstance(M, IdentityPreconditioner):
        run("preconditioner.apply_transpose", lambda: preconditioner_dot_test(M, **options))
    if taylor and problem.n_params == 0:
        checks.append(CheckResult("gradient.taylor", True, float("nan"), float("nan"),
                                  "no parameters (P = 0)", skipped=True))
    elif taylor:
        checks.append(_taylor_check(problem, theta, solver, M, generator))
    return VerificationReport(tuple(checks))


def _taylor_check(problem: AdjointProblem, theta: Any, solver: AdjointSolver | None, M: Any,
                  rng: Any) -> CheckResult:
    """The Taylor test with solves at ``TAYLOR_RTOLS[0]``, or at the next tolerance when the
    solves cannot reach it (an ill-conditioned operator's attainable accuracy)."""
    failed: list[str] = []
    last: KrylovAdjointError | None = None
    for rtol in TAYLOR_RTOLS:
        try:
            report = taylor_test_solver(_tight_solver(problem, solver, M, rtol), theta, rng=rng)
        except (ConvergenceError, NonFiniteError) as exc:
            failed.append(f"{rtol:g}")
            last = exc
            continue
        except KrylovAdjointError as exc:
            return _failure("gradient.taylor", exc)
        row = report.as_check()
        if failed:
            row = dataclasses.replace(row, detail=f"{row.detail}; solves at rtol "
                                      f"{', '.join(failed)} failed, used rtol {rtol:g}")
        return row
    assert last is not None
    return _failure("gradient.taylor", last)


def _failure(name: str, exc: Exception) -> CheckResult:
    culprit = exc.callback if isinstance(exc, CallbackError) else name
    if isinstance(exc, ConvergenceError):
        detail = f"{exc.phase} solve: {exc.result.reason.name} ({exc.result.message})"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    if culprit != name:
        detail = f"while checking {name}: {detail}"
    return CheckResult(culprit, False, float("nan"), float("nan"), detail)


def _preconditioner(problem: AdjointProblem, theta: Any, solver: AdjointSolver | None,
                    spec: Any) -> Any:
    """The preconditioner to dot-test: the one given, else the solver's, else None."""
    if spec is None and solver is not None:
        backend = solver.backend
        if backend.M is not None:
            return backend.M
        spec = backend.spec
        options = backend.options
    else:
        options = {}
    if spec is None or (isinstance(spec, str) and spec == "none"):
        return None
    if hasattr(spec, "apply") and hasattr(spec, "apply_transpose"):
        return spec
    return make_preconditioner(spec, problem.assemble(theta), **options)


def _tight_solver(problem: AdjointProblem, solver: AdjointSolver | None, M: Any,
                  rtol: float) -> AdjointSolver:
    """A fresh solver with the given ``rtol``, the same method and preconditioner."""
    kwargs: dict[str, Any] = {"preconditioner": "none" if M is None else M,
                              "rtol": rtol, "atol": 0.0}
    if solver is not None:
        kwargs.update(method=solver.method, restart=solver.restart,
                      rtol=min(solver.rtol, rtol))
    return AdjointSolver(problem, **kwargs)

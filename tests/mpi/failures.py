"""Under mpirun: a failure on one rank must raise a clear error on every rank, quickly.

Usage: ``failures.py CASE`` with CASE one of the keys of ``CASES``. Every rank prints one
``KA-RESULT`` record: the exception it raised (type, message, the rank it names) and the time
from the start of the failing call to the exception.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from _common import comm, emit

from krylov_adjoint.backends.petsc import (
    CollectiveError,
    DistributedOperator,
    DistributedProblem,
    PetscAdjointSolver,
    gallery,
)

FAILING = 1  # the rank that misbehaves (the last rank when there are fewer)


def failing_rank(world: Any) -> int:
    return min(FAILING, world.Get_size() - 1)


def sabotaged(model: gallery.DistributedModel, world: Any, *, matvec: Any = None,
              vjp: Any = None, assemble: Any = None) -> DistributedProblem:
    """The model's problem with some callbacks replaced on the failing rank only."""
    op = model.problem.operator
    bad = world.Get_rank() == failing_rank(world)
    new = DistributedOperator(
        matvec if (bad and matvec) else op._matvec, layout=op.layout,
        vjp=vjp if (bad and vjp) else op._vjp, jvp=op._jvp, structure=op.structure,
        assemble=assemble if (bad and assemble) else op._assemble, prepare=op._prepare,
        halo=op.halo, theta_halo=op.theta_halo)
    return DistributedProblem(new, model.problem.rhs, model.problem.objective,
                              theta_layout=model.problem.theta_layout)


def after(calls: int, fn: Callable[..., Any], bad: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` for the first ``calls`` calls, then ``bad``."""
    count = [0]

    def wrapped(*args: Any) -> Any:
        count[0] += 1
        return fn(*args) if count[0] <= calls else bad(*args)

    return wrapped


def case_raise_in_matvec(model: Any, world: Any) -> tuple[Any, Any]:
    def boom(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("simulated failure in the stencil")

    problem = sabotaged(model, world, matvec=after(3, model.problem.operator._matvec, boom))
    return problem, model.theta


def case_raise_in_vjp(model: Any, world: Any) -> tuple[Any, Any]:
    def boom(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        raise ValueError("simulated failure in the vjp")

    return sabotaged(model, world, vjp=boom), model.theta


def case_nan_in_matvec(model: Any, world: Any) -> tuple[Any, Any]:
    def nan(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        y = model.problem.operator._matvec(theta, x)
        y[len(y) // 2] = np.nan
        return y

    problem = sabotaged(model, world, matvec=after(2, model.problem.operator._matvec, nan))
    return problem, model.theta


def case_wrong_size_output(model: Any, world: Any) -> tuple[Any, Any]:
    def short(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return model.problem.operator._matvec(theta, x)[:-1]

    return sabotaged(model, world, matvec=short), model.theta


def case_wrong_size_theta(model: Any, world: Any) -> tuple[Any, Any]:
    theta = model.theta
    if world.Get_rank() == failing_rank(world):
        theta = np.concatenate([theta, [0.0]])
    return model.problem, theta


def case_missing_diagonal(model: Any, world: Any) -> tuple[Any, Any]:
    """One rank's rows of the preconditioning matrix lack a diagonal entry (A is fine)."""
    op = model.problem.operator

    def singular(theta: np.ndarray) -> Any:
        rows = sp.lil_matrix(op._assemble(theta))
        rows[0, op.layout.start] = 0.0  # removes the stored entry
        return rows.tocsr()

    return sabotaged(model, world, assemble=singular), model.theta


def case_not_converged(model: Any, world: Any) -> tuple[Any, Any]:
    return model.problem, model.theta


CASES = {
    "raise_in_matvec": case_raise_in_matvec,
    "raise_in_vjp": case_raise_in_vjp,
    "nan_in_matvec": case_nan_in_matvec,
    "wrong_size_output": case_wrong_size_output,
    "wrong_size_theta": case_wrong_size_theta,
    "not_converged": case_not_converged,
    "missing_diagonal": case_missing_diagonal,
}

# Solver options per case (default: the solver's own).
OPTIONS: dict[str, dict[str, Any]] = {
    "not_converged": {"maxiter": 2},
    # block Jacobi with an incomplete factorisation per rank: it fails on one rank only
    "missing_diagonal": {"preconditioner": "bjacobi"},
}


def main(case: str) -> None:
    world = comm()
    model = gallery.diffusion_2d(24, 20)
    problem, theta = CASES[case](model, world)
    solver = PetscAdjointSolver(problem, rtol=1e-10, **OPTIONS.get(case, {}))
    start = time.perf_counter()
    record: dict[str, Any] = {"case": case, "raised": None}
    try:
        solver.gradient(theta)
    except Exception as exc:  # the test checks what was raised
        record.update(raised=type(exc).__name__, message=str(exc).splitlines()[0],
                      seconds=time.perf_counter() - start,
                      named_rank=exc.rank if isinstance(exc, CollectiveError) else None,
                      bases=[c.__name__ for c in type(exc).__mro__])
    # the solver stays usable after an error agreed on by every rank
    record["recovered"] = None
    if case == "missing_diagonal":  # the same solver, with the rows fixed, sets up again
        solver.problem.operator._assemble = model.problem.operator._assemble
        record["recovered"] = solver.gradient(theta).primal.converged
    if case in ("not_converged", "wrong_size_theta"):
        good = PetscAdjointSolver(model.problem, rtol=1e-10) if case == "not_converged" \
            else solver
        record["recovered"] = good.gradient(model.theta).primal.converged
    emit(record)


if __name__ == "__main__":
    main(sys.argv[1])

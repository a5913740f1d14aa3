"""Under mpirun: TAO on adjoint gradients against scipy's L-BFGS-B on the serial problem.

The 2-D diffusion model (θ = log-conductivity per cell) with its least-squares misfit plus a
Tikhonov term, minimised by TAO (BLMVM, BNCG with bounds; LMVM without; BNLS with the exact
Hessian action) and by the serial ``minimize``. Then a vjp that fails on one rank inside a
TAO iteration. Every rank prints one ``KA-RESULT`` record.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from _common import comm, emit, relative_error

import krylov_adjoint as ka
from krylov_adjoint import adapters
from krylov_adjoint.backends.petsc import (
    CollectiveError,
    DistributedOperator,
    DistributedProblem,
    PetscAdjointSolver,
    TaoObjective,
    gallery,
)

ALPHA = 3e-2
FAILING = 1


def problems(model: gallery.DistributedModel) -> tuple[DistributedProblem, ka.AdjointProblem]:
    serial = model.serial.problem
    reference = model.serial.theta
    distributed = DistributedProblem(
        model.problem.operator, model.problem.rhs,
        model.problem.objective + ka.Tikhonov(ALPHA, theta_ref=model.local_theta(reference)),
        theta_layout=model.problem.theta_layout)
    local = ka.AdjointProblem(serial.operator, serial.rhs,
                              serial.objective + ka.Tikhonov(ALPHA, theta_ref=reference),
                              n_params=reference.size)
    return distributed, local


def bounds(model: gallery.DistributedModel) -> tuple[np.ndarray, np.ndarray]:
    reference = model.serial.theta
    return reference - 0.3, reference + 0.02


def scipy_minimiser(problem: ka.AdjointProblem, theta0: np.ndarray,
                    box: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    solver = ka.AdjointSolver(problem, rtol=1e-12, preconditioner="amg")
    import scipy.optimize as sopt

    result = adapters.minimize(solver, theta0, bounds=None if box is None
                               else sopt.Bounds(*box),
                               options={"ftol": 1e-16, "gtol": 1e-10, "maxiter": 1000})
    return result.x


def tao_run(model: gallery.DistributedModel, problem: DistributedProblem, method: str,
            theta0: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None) -> dict:
    with PetscAdjointSolver(problem, rtol=1e-12) as solver:
        lower, upper = (None, None) if box is None else (model.local_theta(box[0]),
                                                           model.local_theta(box[1]))
        tao = TaoObjective(solver, method=method, lower=lower, upper=upper, gatol=1e-9,
                           grtol=0.0, maxiter=500)
        result = tao.solve(model.local_theta(theta0))
        theta = model.gather_theta(result.theta, root=None)
        record = {"theta": theta, "converged": result.converged, "reason": result.reason,
                  "iterations": result.iterations, "history": len(result.history),
                  "history_keys": sorted(result.history[-1]) if result.history else [],
                  "n_solves": result.n_solves, "uses_hessian": tao.uses_hessian,
                  "type": result.tao_type, "prefix": tao.tao.getOptionsPrefix()}
        tao.destroy()
    return record


def failing_run(model: gallery.DistributedModel, problem: DistributedProblem, world: Any,
                theta0: np.ndarray) -> dict:
    op = problem.operator
    count = [0]

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        count[0] += 1
        if world.Get_rank() == min(FAILING, world.Get_size() - 1) and count[0] > 4:
            raise RuntimeError("vjp broke inside an iteration")
        return op._vjp(theta, x, lam)

    broken = DistributedOperator(op._matvec, layout=op.layout, vjp=vjp, jvp=op._jvp,
                                 structure=op.structure, assemble=op._assemble,
                                 prepare=op._prepare, halo=op.halo, theta_halo=op.theta_halo)
    sabotaged = DistributedProblem(broken, problem.rhs, problem.objective,
                                   theta_layout=problem.theta_layout)
    start = time.perf_counter()
    with PetscAdjointSolver(sabotaged, rtol=1e-12, check_gradient=False) as solver:
        tao = TaoObjective(solver, method="lmvm", gatol=1e-11, grtol=0.0)
        try:
            tao.solve(model.local_theta(theta0))
            record: dict[str, Any] = {"error": None}
        except CollectiveError as exc:
            record = {"error": type(exc).__name__, "rank": exc.rank, "message": str(exc),
                      "history": len(getattr(exc, "history", [])),
                      "evaluations": len(getattr(exc, "evaluations", []))}
        tao.destroy()
    record["seconds"] = time.perf_counter() - start
    return record


def options_run(model: gallery.DistributedModel, problem: DistributedProblem,
                theta0: np.ndarray) -> dict:
    """A BLMVM run asked for in code, with the command line's ``-ka_tao_*`` options."""
    with PetscAdjointSolver(problem, rtol=1e-12) as solver:
        tao = TaoObjective(solver, method="blmvm", gatol=1e-12, grtol=0.0)
        result = tao.solve(model.local_theta(theta0))
        record = {"type": result.tao_type, "iterations": result.iterations,
                  "reason": result.reason, "history": len(result.history)}
        tao.destroy()
    return record


def main() -> None:
    world = comm()
    model = gallery.diffusion_2d(6, 5)
    distributed, local = problems(model)
    theta0 = model.serial.theta + 0.1 * np.sin(np.arange(model.serial.theta.size))
    if len(sys.argv) > 1:  # PETSc options on the command line
        emit({"options": options_run(model, distributed, theta0)})
        return
    box = bounds(model)
    serial = None  # the serial references, computed once and shared
    if world.Get_rank() == 0:
        serial = (scipy_minimiser(local, theta0, box), scipy_minimiser(local, theta0, None))
    want_bounded, want_free = world.bcast(serial, root=0)
    record: dict[str, Any] = {"active_bounds": int(np.sum(
        (want_bounded <= box[0] + 1e-9) | (want_bounded >= box[1] - 1e-9)))}
    for method, bounded in (("blmvm", True), ("bncg", True), ("lmvm", False),
                            ("bnls", True)):
        run = tao_run(model, distributed, method, theta0, box if bounded else None)
        want = want_bounded if bounded else want_free
        run["error_vs_scipy"] = relative_error(run.pop("theta"), want)
        record[method] = run
    record["failure"] = failing_run(model, distributed, world, theta0)
    emit(record)


if __name__ == "__main__":
    main()

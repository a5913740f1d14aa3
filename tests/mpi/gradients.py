"""Under mpirun: distributed gradients against the serial backend, Taylor and dot tests.

Every rank prints one ``KA-RESULT`` JSON record with the checks' numbers; the test asserts on
rank 0's (the numbers are global, the same on every rank).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _common import comm, emit, relative_error

import krylov_adjoint as ka
from krylov_adjoint.backends.petsc import (
    DistributedOperator,
    DistributedProblem,
    PetscAdjointSolver,
    gallery,
    verify,
)
from krylov_adjoint.backends.petsc._import import petsc


def serial_gradient(model: gallery.DistributedModel) -> tuple[float, np.ndarray]:
    solver = ka.AdjointSolver(model.serial.problem, rtol=1e-12, preconditioner="amg")
    result = solver.gradient(model.serial.theta)
    return result.objective, result.gradient


def compare(name: str, model: gallery.DistributedModel, **options: object) -> dict:
    """Distributed vs serial J and dJ/dθ (serial computed on every rank: small grids)."""
    J_ref, g_ref = serial_gradient(model)
    with PetscAdjointSolver(model.problem, rtol=1e-12, **options) as solver:
        result = solver.gradient(model.theta)
        gradient = model.gather_theta(result.gradient, root=None)
        x = model.gather_state(result.x, root=None)
        return {
            # the data each rank built from its cells against the serial model's
            f"{name}_theta_error": relative_error(model.gather_theta(model.theta, root=None),
                                                  model.serial.theta),
            f"{name}_objective_error": abs(result.objective - J_ref) / abs(J_ref),
            f"{name}_gradient_error": relative_error(gradient, g_ref),
            f"{name}_x_residual": float(np.linalg.norm(
                model.serial.problem.assemble(model.serial.theta) @ x
                - model.serial.problem.b(model.serial.theta))),
            f"{name}_primal_iterations": result.primal.iterations,
            f"{name}_adjoint_iterations": result.adjoint_solve.iterations,
            f"{name}_adjoint_pc": result.extra["adjoint_pc"],
            f"{name}_reasons": [result.primal.reason.name, result.adjoint_solve.reason.name],
        }


def gamg_setups() -> int:
    return int(petsc().Log.Event("PCSetUp_GAMG+").getPerfInfo()["count"])


def setup_counts(model: gallery.DistributedModel) -> dict:
    """GAMG set-ups: once per θ (reuse off), once in all (reuse on); never for the adjoint."""
    out = {}
    rng = np.random.default_rng(1)
    thetas = [model.theta + 0.01 * k * rng.standard_normal(model.theta.size)
              for k in range(3)]
    for reuse in (False, True):
        for adjoint_pc in ("explicit", "transpose"):
            before = gamg_setups()
            with PetscAdjointSolver(model.problem, rtol=1e-10, reuse_preconditioner=reuse,
                                    adjoint_pc=adjoint_pc) as solver:
                for theta in thetas:
                    solver.gradient(theta)
                key = f"setups_reuse{int(reuse)}_{adjoint_pc}"
                out[key] = [gamg_setups() - before, solver.setups]
    return out


def main() -> None:
    world = comm()
    start = time.perf_counter()
    diffusion = gallery.diffusion_2d(12, 10)
    convection = gallery.convection_diffusion_2d(12, 10, peclet=50.0)
    if "--setups-only" in sys.argv:
        record = setup_counts(diffusion)
        record.update({f"convection_{k}": v for k, v in setup_counts(convection).items()})
    else:
        record = checks(diffusion, convection)
    record["seconds"] = time.perf_counter() - start
    world.Barrier()
    emit(record)


def vec_interface_error() -> float:
    """A(θ) = diag(θ) with callbacks on petsc4py Vecs: dJ/dθ = −1/θ² for J = sum(x)."""
    def mult(theta, x, out):
        out.pointwiseMult(theta, x)

    def vjp(theta, x, lam, out):
        out.pointwiseMult(lam, x)

    op = DistributedOperator(mult, n=11, structure="spd", vjp=vjp, interface="vecs")
    m = op.layout.local_size
    problem = DistributedProblem(op, np.ones(m), ka.LinearFunctional(np.ones(m)),
                                 theta_layout=op.layout)
    theta = np.linspace(1.0, 3.0, 11)
    with PetscAdjointSolver(problem, preconditioner="none", rtol=1e-12) as solver:
        result = solver.gradient(op.layout.local_part(theta))
        return relative_error(result.gather_gradient(root=None), -1 / theta**2)


def checks(diffusion: gallery.DistributedModel, convection: gallery.DistributedModel) -> dict:
    record: dict = {"vecs_gradient_error": vec_interface_error()}
    record.update(compare("diffusion_2d", diffusion))
    record.update(compare("convection", convection))
    record.update(compare("convection_explicit", convection, adjoint_pc="explicit"))
    record.update(compare("diffusion_3d", gallery.diffusion_3d(6), method="gmres",
                          adjoint_pc="explicit"))
    if comm().Get_size() > 1:  # GAMG's Galerkin products in one pass (an MPIAIJ option)
        record.update(compare("diffusion_3d_allatonce", gallery.diffusion_3d(6),
                              options={"matptap_via": "allatonce"}))

    with PetscAdjointSolver(diffusion.problem, rtol=1e-12) as solver:
        taylor = verify.taylor_test_solver(solver, diffusion.theta, rng=3)
    record["taylor_passed"] = taylor.passed
    record["taylor_min_rate"] = taylor.min_rate
    record["taylor_mean_rate"] = taylor.mean_rate

    for name, model in (("diffusion", diffusion), ("convection", convection)):
        record[f"dot_{name}_operator"] = verify.operator_dot_test(
            model.problem, model.theta, rng=0).error
        record[f"dot_{name}_vjp"] = verify.operator_vjp_test(
            model.problem, model.theta, rng=0).error
    record["dot_convection_rhs_vjp"] = verify.rhs_vjp_test(
        convection.problem, convection.theta, rng=0).error
    with PetscAdjointSolver(convection.problem, rtol=1e-10, adjoint_pc="transpose") as solver:
        solver.gradient(convection.theta)
        record["dot_convection_pc"] = verify.preconditioner_dot_test(solver, rng=0).error
        record["adjoint_pc_gap_transpose"] = float(
            verify.adjoint_preconditioner_test(solver, rng=0).max())
    with PetscAdjointSolver(convection.problem, rtol=1e-10, adjoint_pc="explicit") as solver:
        solver.gradient(convection.theta)
        record["adjoint_pc_gap_explicit"] = float(
            verify.adjoint_preconditioner_test(solver, rng=0).max())
    return record


if __name__ == "__main__":
    main()

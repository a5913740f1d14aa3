"""Under mpirun: ``check_problem`` on distributed problems, correct and with a broken VJP.

Every rank prints one ``KA-RESULT`` record per problem: whether the report passed, its
failing callbacks and the names of its checks (the same on every rank).
"""

from __future__ import annotations

from _common import comm, emit

from krylov_adjoint.backends.petsc import (
    DistributedOperator,
    DistributedProblem,
    PetscAdjointSolver,
    gallery,
)
from krylov_adjoint.verify import check_problem


def broken_vjp(model: gallery.DistributedModel) -> DistributedProblem:
    """The model's problem with the sign of ``operator.vjp`` flipped on every rank."""
    problem, op = model.problem, model.problem.operator

    def vjp(theta, x, lam):
        return -op._vjp(theta, x, lam)

    new = DistributedOperator(
        op._matvec, layout=op.layout, rmatvec=op._rmatvec, vjp=vjp, jvp=op._jvp,
        structure=op.structure, assemble=op._assemble, prepare=op._prepare, halo=op.halo,
        theta_halo=op.theta_halo)
    return DistributedProblem(new, problem.rhs, problem.objective,
                              theta_layout=problem.theta_layout)


def record(name: str, report) -> dict:
    return {f"{name}_passed": report.passed, f"{name}_failures": list(report.failures),
            f"{name}_names": list(report.names)}


def main() -> None:
    comm()
    diffusion = gallery.diffusion_2d(10, 8)
    convection = gallery.convection_diffusion_2d(10, 8, peclet=20.0)
    out: dict = {}
    out.update(record("diffusion", check_problem(diffusion.problem, diffusion.theta, rng=0)))
    out.update(record("convection", check_problem(convection.problem, convection.theta,
                                                  rng=0)))
    with PetscAdjointSolver(convection.problem, preconditioner="jacobi") as solver:
        out.update(record("convection_pc", check_problem(
            convection.problem, convection.theta, solver=solver, rng=1)))
    out.update(record("broken", check_problem(broken_vjp(convection), convection.theta,
                                              rng=0)))
    emit(out)


if __name__ == "__main__":
    main()

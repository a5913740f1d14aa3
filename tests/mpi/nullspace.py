"""Under mpirun: a pure-Neumann problem with its declared nullspace on PETSc (GAMG + CG).

Checks the distributed gradient against a dense pseudo-inverse reference, the Taylor test,
the MatNullSpace objects on the operators, and the errors for an inconsistent right-hand side
and for declared vectors that are not null (raised on every rank, no deadlock).
"""

from __future__ import annotations

import numpy as np
from _common import comm, emit, relative_error

from krylov_adjoint.backends.petsc import (
    DistributedOperator,
    DistributedProblem,
    PetscAdjointSolver,
    gallery,
    verify,
)
from krylov_adjoint.errors import CallbackError
from krylov_adjoint.problem import Nullspace


def pinv_reference(serial, b=None):
    """x = A⁺b and dJ/dθ = −((A⁺)ᵀ∂J/∂x)ᵀ(∂A/∂θ)x (constant nullspace), dense."""
    problem, theta = serial.problem, serial.theta
    A_pinv = np.linalg.pinv(problem.assemble(theta).toarray())
    x = A_pinv @ (problem.b(theta) if b is None else b)
    g = problem.objective_grad_x(x, theta)
    gradient = np.array([-(g @ A_pinv) @ (D @ x) for D in serial.derivative_matrices(theta)])
    return x, problem.objective_value(x, theta), gradient


def with_rhs(model, b_local, rhs="check", nullspace=None):
    op = model.problem.operator
    declared = op.nullspace if nullspace is None else nullspace
    if rhs != declared.rhs:
        declared = Nullspace(declared.columns(model.theta, model.problem.n_local)[0], rhs=rhs)
    operator = DistributedOperator(op._matvec, layout=op.layout, vjp=op._vjp, jvp=op._jvp,
                                   structure="spd", assemble=op._assemble, prepare=op._prepare,
                                   halo=op.halo, theta_halo=op.theta_halo, nullspace=declared)
    return DistributedProblem(operator, b_local, model.problem.objective,
                              theta_layout=model.problem.theta_layout)


def main() -> None:
    world = comm()
    record: dict = {}
    model = gallery.neumann_diffusion_2d(12, 10, comm=world)
    x_ref, J_ref, g_ref = pinv_reference(model.serial)
    with PetscAdjointSolver(model.problem, preconditioner="amg", method="cg",
                            rtol=1e-12) as solver:
        result = solver.gradient(model.theta)
        x = model.gather_state(result.x, root=None)
        record.update(
            gradient_error=relative_error(model.gather_theta(result.gradient, root=None), g_ref),
            objective_error=abs(result.objective - J_ref) / abs(J_ref),
            x_error=relative_error(x, x_ref), x_mean=float(abs(x.mean())),
            reasons=[result.primal.reason.name, result.adjoint_solve.reason.name],
            iterations=[result.primal.iterations, result.adjoint_solve.iterations],
            pc_type=result.extra["pc_type"],
            has_nullspaces=bool(solver.backend.shell.A.getNullSpace() is not None
                                and solver.backend.shell.AT.getTransposeNullSpace()
                                is not None),
            near_nullspace=bool(solver.backend.pmat.mat.getNearNullSpace() is not None))
        taylor = verify.taylor_test_solver(solver, model.theta, rng=3)
        record.update(taylor_passed=bool(taylor.passed), taylor_min_rate=float(min(taylor.rates)))

    b_local = model.problem.rhs.value(None)
    shifted = b_local + 1.0  # the constants: inconsistent
    with PetscAdjointSolver(with_rhs(model, shifted), preconditioner="amg", method="cg",
                            rtol=1e-10) as solver:
        try:
            solver.gradient(model.theta)
            record["inconsistent_error"] = ""
        except CallbackError as exc:
            record["inconsistent_error"] = str(exc)

    b_full = model.serial.problem.b(model.serial.theta) + 1.0
    x_ls, _, g_ls = pinv_reference(model.serial, b_full)
    with PetscAdjointSolver(with_rhs(model, shifted, rhs="project"), preconditioner="amg",
                            method="cg", rtol=1e-12) as solver:
        result = solver.gradient(model.theta)
        record["projected_x_error"] = relative_error(
            model.gather_state(result.x, root=None), x_ls)
        # the serial objective's gradient is that of the shifted problem too: same A(θ)
        record["projected_gradient_error"] = relative_error(
            model.gather_theta(result.gradient, root=None), g_ls)

    ramp = np.linspace(1.0, 2.0, model.problem.n_local)
    with PetscAdjointSolver(with_rhs(model, b_local, nullspace=Nullspace(ramp)),
                            preconditioner="amg", method="cg") as solver:
        try:
            solver.gradient(model.theta)
            record["not_null_error"] = ""
        except CallbackError as exc:
            record["not_null_error"] = str(exc)
    emit(record)


if __name__ == "__main__":
    main()

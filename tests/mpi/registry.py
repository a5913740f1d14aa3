"""Under mpirun: the registry's PETSc cases (``mpi_cases`` of ``tests/conftest.py``).

Every rank prints one ``KA-RESULT`` record: per case, the relative errors of J and dJ/dθ
against the dense reference, the solves' convergence, and whether θ was left unchanged; then
the reuse rule, the directional derivative and the refusal of a nonsymmetric operator
declared SPD. The test asserts on the numbers (they are global: every rank agrees).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _common import comm, emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import (  # noqa: E402
    PROBLEMS,
    dense_hessian_action,
    dense_reference,
    mpi_cases,
    relative_error,
    run,
)

import krylov_adjoint as ka  # noqa: E402


def gradient_case(case) -> dict:
    with run("petsc", case.spec.build(), method=case.method,
             preconditioner=case.preconditioner) as r:
        model = r.model
        reference = dense_reference(model, model.theta)
        theta = np.array(r.local(model.theta), copy=True)
        before = theta.copy()
        result = r.solver.gradient(theta)
        return {
            "gradient_error": relative_error(r.whole_gradient(result), reference.gradient),
            "objective_error": abs(result.objective - reference.objective)
            / abs(reference.objective),
            "converged": [result.primal.converged, result.adjoint_solve.converged],
            "theta_unchanged": bool(np.array_equal(theta, before)),
        }


def reuse_and_tangent(name: str) -> dict:
    with run("petsc", PROBLEMS[name].build()) as r:
        theta0 = r.model.theta
        step = np.random.default_rng(7).standard_normal(theta0.size)
        thetas = [theta0 + 1e-3 * k * step for k in range(3)]
        rebuilt = [r.solver.gradient(r.local(t)).preconditioner_rebuilt for t in thetas]
        setups = r.solver.setups
        r.solver.rebuild_preconditioner()
        forced = r.solver.gradient(r.local(theta0))
        reference = dense_reference(r.model, theta0)
        dtheta = np.random.default_rng(3).standard_normal(theta0.size)
        tangent = r.solver.directional_derivative(r.local(theta0), r.local(dtheta))
        scale = np.linalg.norm(reference.gradient) * np.linalg.norm(dtheta)
        return {
            "rebuilt": rebuilt, "setups": setups,
            "setups_after_rebuild": r.solver.setups,
            "forced_rebuilt": forced.preconditioner_rebuilt,
            "forced_error": relative_error(r.whole_gradient(forced), reference.gradient),
            "tangent_error": abs(tangent.derivative - reference.gradient @ dtheta) / scale,
        }


def hessian_case(name: str) -> dict:
    """H·dθ and the Gauss–Newton action against the dense reference and the serial solver."""
    model = PROBLEMS[name].build()
    v = np.random.default_rng(5).standard_normal(model.n_params)
    with run("serial", model) as serial:
        serial_hessian = serial.solver.hessian_vector_product(model.theta, v).product
        serial_gauss_newton = serial.solver.gauss_newton_vector_product(model.theta, v).product
    with run("petsc", model) as r:
        theta, direction = r.local(model.theta), np.array(r.local(v))
        H = r.whole(r.solver.hessian_vector_product(theta, direction).product, v.size)
        G = r.whole(r.solver.gauss_newton_vector_product(theta, direction).product, v.size)
    return {"hessian_error": relative_error(H, dense_hessian_action(model, model.theta, v)),
            "hessian_vs_serial": relative_error(H, serial_hessian),
            "gauss_newton_vs_serial": relative_error(G, serial_gauss_newton)}


def newton(name: str = "tikhonov") -> dict:
    """Newton–CG to ‖g‖/‖g₀‖ ≤ 1e-8, serially and distributed (global inner products)."""
    from krylov_adjoint.newton import newton_cg

    model = PROBLEMS[name].build()
    with run("serial", model) as serial:
        reference = newton_cg(serial.solver, model.theta, gtol=1e-8)
    with run("petsc", model) as r:
        mpi_comm = r.layout.comm
        result = newton_cg(r.solver, r.local(model.theta), gtol=1e-8,
                           dot=lambda a, b: mpi_comm.allreduce(float(a @ b)))
        theta = r.whole(result.theta, model.n_params)
    return {"iterations": [result.iterations, reference.iterations],
            "converged": bool(result.converged),
            "theta_vs_serial": relative_error(theta, reference.theta)}


def laplace_eigenvalues(name: str = "diffusion", k: int = 5) -> dict:
    """The top eigenvalues of the Gauss–Newton Hessian (prior R = I), serially and
    distributed, from the same random probes."""
    from krylov_adjoint.uq import columnwise, randomized_eigh

    model = PROBLEMS[name].build()
    omega = np.random.default_rng(11).standard_normal((model.n_params, k + 10))
    same = columnwise(lambda v: v)
    with run("serial", model) as serial:
        gn = columnwise(lambda v: serial.solver.gauss_newton_vector_product(model.theta, v)
                        .product)
        reference = randomized_eigh(gn, same, same, k, omega=omega).eigenvalues
    with run("petsc", model) as r:
        mpi_comm, theta = r.layout.comm, r.local(model.theta)
        gn = columnwise(lambda v: np.array(r.solver.gauss_newton_vector_product(theta, v)
                                           .product))
        result = randomized_eigh(gn, same, same, k, omega=r.layout.local_part(omega),
                                 reduce_sum=lambda m: mpi_comm.allreduce(m))
    return {"eigenvalues_vs_serial": relative_error(result.eigenvalues, reference),
            "eigenvalues": [float(e) for e in result.eigenvalues]}


def jacobians(name: str = "convection") -> dict:
    """K = 3 linear outputs, by adjoint and by tangent solves, against the serial Jacobian."""
    model = PROBLEMS[name].build()
    weights = np.random.default_rng(2).standard_normal((3, model.n))
    with run("serial", model) as serial:
        reference = serial.solver.jacobian(
            model.theta, [ka.LinearFunctional(c) for c in weights]).matrix
    errors = {}
    with run("petsc", model) as r:
        xl = r.solver.problem.x_layout
        outputs = [ka.LinearFunctional(c[xl.start:xl.stop]) for c in weights]
        for mode in ("adjoint", "tangent"):
            local = r.solver.jacobian(r.local(model.theta), outputs, mode=mode).matrix
            whole = np.array([r.whole(row, model.n_params) for row in local])
            errors[mode] = relative_error(whole, reference)
    return errors


def certificate(name: str) -> dict:
    """The estimate against the true gradient error, and an adaptive gradient's accuracy."""
    model = PROBLEMS[name].build()
    theta = model.theta + 0.3 * np.random.default_rng(0).standard_normal(model.n_params)
    reference = dense_reference(model, theta).gradient
    ratios = []
    for rtol in (1e-3, 1e-6):
        with run("petsc", model, rtol=rtol, warm_start=False) as r:
            result = r.solver.gradient(r.local(theta))
            true = float(np.linalg.norm(r.whole_gradient(result) - reference))
            ratios.append(true / result.error_estimate.gradient_error)
    with run("petsc", model, rtol=1e-12, accuracy=1e-4) as r:
        result = r.solver.gradient(r.local(theta))
        adaptive_error = relative_error(r.whole_gradient(result), reference)
        estimated = result.error_estimate.gradient_relative_error
    return {"ratios": ratios, "adaptive_error": adaptive_error, "adaptive_estimate": estimated,
            "adaptive_rtol": result.accuracy.primal_rtol}


def lu_without_parallel_direct_solver() -> str:
    """preconditioner="lu" on several ranks of a PETSc build without MUMPS & co."""
    from krylov_adjoint.backends.petsc import PetscAdjointSolver
    from krylov_adjoint.backends.petsc import gallery as petsc_gallery
    from krylov_adjoint.backends.petsc._import import petsc

    if any(petsc().Sys.hasExternalPackage(name) for name in ("mumps", "superlu_dist")):
        return "has a parallel direct solver"
    model = petsc_gallery.diffusion_2d(8, 6)
    try:
        PetscAdjointSolver(model.problem, preconditioner="lu").destroy()
    except ValueError as exc:
        return f"ValueError: {exc}"
    return "not refused"


def refused() -> str:
    model = PROBLEMS["convection"].build()
    with run("petsc", model, structure="spd", preconditioner="none") as r:
        try:
            r.solver.gradient(r.local(model.theta))
        except ka.CallbackError as exc:
            return f"CallbackError: {exc}"
        return "not refused"


def main() -> None:
    comm()
    record: dict = {"cases": {}}
    for case in mpi_cases():
        key = f"{case.problem}-{case.method}-{case.preconditioner}"
        try:
            record["cases"][key] = gradient_case(case)
        except ka.KrylovAdjointError as exc:  # raised on every rank alike
            record["cases"][key] = {"error": f"{type(exc).__name__}: {exc}"}
    record["reuse"] = {name: reuse_and_tangent(name) for name in ("diffusion", "convection")}
    record["refused"] = refused()
    record["hessian"] = {name: hessian_case(name) for name in PROBLEMS}
    record["newton"] = newton()
    record["laplace"] = laplace_eigenvalues()
    record["lu"] = lu_without_parallel_direct_solver()
    record["jacobian"] = jacobians()
    record["certificate"] = {name: certificate(name) for name in ("diffusion", "convection")}
    emit(record)


if __name__ == "__main__":
    main()

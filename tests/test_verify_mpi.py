"""The same verification tools on the serial backend and on PETSc (one rank in-process, two
ranks under mpirun): the same reports, the same ``rng`` semantics, the same culprits."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from test_petsc_mpi import run_mpi

import krylov_adjoint as ka
from krylov_adjoint import verify as kv
from krylov_adjoint.backends.petsc import (
    DistributedOperator,
    DistributedProblem,
    PetscAdjointSolver,
)
from krylov_adjoint.backends.petsc import verify as petsc_verify
from krylov_adjoint.errors import CallbackError, ConvergenceError
from krylov_adjoint.precond import JacobiPreconditioner

N = 16
BACKENDS = ["serial", "petsc"]
A0 = (sp.diags([-1.0, 4.0, -2.5], [-1, 0, 1], shape=(N, N))
      + sp.diags([0.3], [3], shape=(N, N))).tocsr()
THETA = np.linspace(0.5, 1.5, N)


def callbacks(broken: str = "") -> dict:
    """A(θ) = A₀ + diag(θ²) (nonsymmetric), b(θ) = sin θ, J = ½‖x‖² + ½‖θ‖²; ``broken``
    names one callback to get wrong."""
    sign = {name: -1.0 if name == broken else 1.0
            for name in ("rmatvec", "vjp", "rhs.vjp", "grad_x")}

    def vjp(th, x, lam):
        if broken == "vjp-raises":
            raise RuntimeError("boom")
        return sign["vjp"] * 2 * th * lam * x

    return dict(
        matvec=lambda th, x: A0 @ x + th**2 * x,
        rmatvec=lambda th, y: (A0.T @ y if sign["rmatvec"] > 0 else A0 @ y) + th**2 * y,
        vjp=vjp, jvp=lambda th, x, d: 2 * th * d * x,
        assemble=lambda th: (A0 + sp.diags(th**2)).tocsr(),
        rhs=ka.RightHandSide(np.sin, vjp=lambda th, lam: sign["rhs.vjp"] * np.cos(th) * lam,
                             jvp=lambda th, d: np.cos(th) * d),
        objective=ka.Objective(J=lambda th, x: 0.5 * float(x @ x) + 0.5 * float(th @ th),
                               dJ_dx=lambda th, x: sign["grad_x"] * x,
                               dJ_dtheta=lambda th, x: th))


def make(backend: str, broken: str = "") -> ka.AdjointProblem | DistributedProblem:
    c = callbacks(broken)
    if backend == "serial":
        op = ka.ParametricOperator(c["matvec"], n=N, rmatvec=c["rmatvec"], vjp=c["vjp"],
                                   jvp=c["jvp"], assemble=c["assemble"])
        return ka.AdjointProblem(op, c["rhs"], c["objective"], n_params=N)
    op = DistributedOperator(c["matvec"], n=N, rmatvec=c["rmatvec"], vjp=c["vjp"],
                             jvp=c["jvp"], assemble=c["assemble"])
    return DistributedProblem(op, c["rhs"], c["objective"], theta_layout=op.layout)


def solver_for(backend: str, problem, **kwargs):
    cls = ka.AdjointSolver if backend == "serial" else PetscAdjointSolver
    return cls(problem, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_problem_passes_on_a_correct_problem(backend):
    report = kv.check_problem(make(backend), THETA, rng=0)
    assert report.passed, report.summary()
    assert "gradient.taylor" in report.names


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("broken", "culprit"), [
    ("rmatvec", "operator.rmatvec"), ("vjp", "operator.vjp"), ("rhs.vjp", "rhs.vjp"),
    ("grad_x", "objective.grad_x"), ("vjp-raises", "operator.vjp")])
def test_check_problem_names_the_broken_callback(backend, broken, culprit):
    report = kv.check_problem(make(backend, broken), THETA, rng=0)
    assert not report.passed
    assert report.failures[0] == culprit, report.summary()


@pytest.mark.parametrize("backend", BACKENDS)
def test_derivative_tests_return_the_same_reports(backend):
    problem = make(backend)
    for test in (kv.operator_vjp_test, kv.operator_jvp_test, kv.rhs_vjp_test, kv.rhs_jvp_test):
        report = test(problem, THETA, rng=0)
        assert isinstance(report, kv.DerivativeReport) and report.passed, report.summary()
    assert kv.operator_vjp_test(problem, THETA, reference="fd", rng=0).passed
    assert isinstance(kv.operator_dot_test(problem, THETA, rng=0), kv.DotTestReport)
    objective = kv.objective_gradient_test(problem, THETA, rng=0)
    assert isinstance(objective, kv.ObjectiveGradientReport) and objective.passed
    assert not kv.operator_vjp_test(make(backend, "vjp"), THETA, reference="fd", rng=0).passed


@pytest.mark.parametrize("backend", BACKENDS)
def test_rng_none_is_fresh_and_a_seed_reproducible(backend):
    problem = make(backend)
    first, second = (kv.operator_vjp_test(problem, THETA, rng=7) for _ in range(2))
    np.testing.assert_array_equal(first.claimed, second.claimed)
    fresh = [kv.operator_vjp_test(problem, THETA).claimed for _ in range(2)]
    assert not np.array_equal(*fresh)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_raising_callback_is_named(backend):
    with pytest.raises(CallbackError) as info:
        kv.operator_vjp_test(make(backend, "vjp-raises"), THETA, rng=0)
    assert info.value.callback == "operator.vjp"


@pytest.mark.parametrize("backend", BACKENDS)
def test_taylor_test_solver_passes_and_refuses_unconverged_solves(backend):
    problem = make(backend)
    tight = solver_for(backend, problem, rtol=1e-12, preconditioner="none")
    assert kv.taylor_test_solver(tight, THETA, rng=0).passed
    loose = solver_for(backend, problem, rtol=1e-12, maxiter=2, raise_on_failure=False,
                       preconditioner="none")
    with pytest.raises(ConvergenceError):
        kv.taylor_test_solver(loose, THETA, rng=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_preconditioner_dot_test(backend):
    problem = make(backend)
    if backend == "serial":
        M = JacobiPreconditioner((A0 + sp.diags(THETA**2)).tocsr())
    else:
        M = PetscAdjointSolver(problem, preconditioner="jacobi")
        M.solve(THETA)
    report = kv.preconditioner_dot_test(M, rng=0)
    assert report.name == "preconditioner.apply_transpose" and report.passed


def test_petsc_verify_keeps_its_names():
    assert petsc_verify.operator_vjp_test is kv.operator_vjp_test
    assert petsc_verify.check_problem is kv.check_problem
    with PetscAdjointSolver(make("petsc"), preconditioner="jacobi",
                            adjoint_pc="transpose") as solver:
        solver.gradient(THETA)
        assert petsc_verify.adjoint_preconditioner_test(solver, rng=0).max() <= 1e-12


@pytest.mark.mpi
def test_check_problem_under_mpirun_on_two_ranks():
    records, _, _ = run_mpi("verification.py", 2, timeout=150)
    for r in records:
        for name in ("diffusion", "convection", "convection_pc"):
            assert r[f"{name}_passed"], (name, r)
        assert "preconditioner.apply_transpose" in r["convection_pc_names"], r
        assert not r["broken_passed"]
        assert r["broken_failures"][0] == "operator.vjp", r
    assert records[0] == {**records[1], "rank": 0}

"""The engine's policy: declared transposes checked, the reuse rule's second chance, warm starts.

Each test reproduces a way the engine used to return a wrong answer or stay stuck.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from conftest import BACKENDS, dense_reference, petsc_missing, relative_error, run

import krylov_adjoint as ka
from krylov_adjoint.adapters import from_assembly


def test_a_declared_symmetry_that_is_false_is_refused():
    A0 = sp.diags([-1.6, 2, -0.4], [-1, 0, 1], (50, 50)).tocsr()
    op = ka.ParametricOperator(lambda t, x: A0 @ x + t * x, vjp=lambda t, x, l: l * x, n=50,
                               structure="spd", assemble=lambda t: A0 + sp.diags(t))
    problem = ka.AdjointProblem(op, np.ones(50), ka.LinearFunctional(np.ones(50)), n_params=50)
    with pytest.raises(ka.CallbackError, match="not symmetric") as info:
        ka.AdjointSolver(problem).gradient(np.full(50, 1.0))
    assert info.value.callback.startswith("operator.matvec")


def test_a_declared_symmetry_is_checked_at_every_theta_not_only_the_first():
    # symmetric at θ = 0, not at θ = 0.8: from_assembly checks only A(θ₀)
    n = 30
    T = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], (n, n)).tocsr()
    S = sp.diags([1.0], [1], (n, n)).tocsr()

    def assemble(theta):
        return (T + theta[0] * S).tocsr()

    def assembly_vjp(theta, values_bar):
        A = assemble(theta)
        mask = sp.csr_matrix((values_bar, A.indices, A.indptr), shape=A.shape)
        return np.array([mask.multiply(S).sum()])

    op = from_assembly(assemble, assembly_vjp, np.zeros(1), structure="symmetric")
    problem = ka.AdjointProblem(op, np.ones(n), ka.LinearFunctional(np.ones(n)), n_params=1)
    solver = ka.AdjointSolver(problem, preconditioner="none")
    solver.gradient(np.zeros(1))
    with pytest.raises(ka.CallbackError, match="not symmetric"):
        solver.gradient(np.array([0.8]))


def test_a_wrong_rmatvec_is_refused():
    A = sp.random(40, 40, density=0.2, random_state=1) + 4 * sp.identity(40)
    A = A.tocsr()
    op = ka.ParametricOperator(lambda t, x: A @ x + t * x, rmatvec=lambda t, y: A @ y + t * y,
                               vjp=lambda t, x, l: l * x, n=40)
    problem = ka.AdjointProblem(op, np.ones(40), ka.LinearFunctional(np.ones(40)), n_params=40)
    with pytest.raises(ka.CallbackError, match="not the transpose") as info:
        ka.AdjointSolver(problem, preconditioner="none").gradient(np.ones(40))
    assert info.value.callback == "operator.rmatvec"


def test_the_checks_can_be_turned_off():
    A0 = sp.diags([-1.6, 2, -0.4], [-1, 0, 1], (50, 50)).tocsr()
    op = ka.ParametricOperator(lambda t, x: A0 @ x + t * x, vjp=lambda t, x, l: l * x, n=50,
                               structure="symmetric")
    problem = ka.AdjointProblem(op, np.ones(50), ka.LinearFunctional(np.ones(50)), n_params=50)
    ka.AdjointSolver(problem, preconditioner="none", check_transpose=False).gradient(
        np.ones(50))


def _reaction_diffusion(m: int = 60):
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], (m, m)) * (m + 1) ** 2
    L = (sp.kron(T, sp.identity(m)) + sp.kron(sp.identity(m), T)).tocsr()
    n = m * m
    op = ka.ParametricOperator(lambda t, x: L @ x + t[0] * x,
                               vjp=lambda t, x, l: np.array([l @ x]), n=n, structure="spd",
                               assemble=lambda t: (L + t[0] * sp.identity(n)).tocsr())
    rng = np.random.default_rng(0)
    problem = ka.AdjointProblem(op, rng.random(n), ka.LinearFunctional(rng.random(n)),
                                n_params=1)
    return problem, L, n


def _dense_gradient(L, n, rhs, c, theta):
    """dJ/dθ = −λᵀx by a sparse direct solve (A is symmetric)."""
    A = (L + theta * sp.identity(n)).tocsc()
    return -spla.spsolve(A, c) @ spla.spsolve(A, rhs)


def test_a_stale_preconditioner_is_set_up_again_when_the_solve_fails():
    problem, L, n = _reaction_diffusion()
    solver = ka.AdjointSolver(problem, maxiter=40, rtol=1e-10)
    solver.gradient(np.array([1e9]))  # AMG of a nearly diagonal matrix
    result = solver.gradient(np.array([1e-3]))  # that AMG cannot converge in 40 iterations
    assert result.preconditioner_rebuilt
    assert "set up again" in result.preconditioner_note
    assert result.extra["abandoned_primal"][0].reason.name == "DIVERGED_MAXITER"
    assert solver.setups == 2
    reference = _dense_gradient(L, n, problem.rhs.value(None), problem.objective.c, 1e-3)
    assert result.gradient[0] == pytest.approx(reference, rel=1e-6)
    # the set-up again kept the coarsening of θ = 1e9, which converges far slower than a
    # full set-up did: the next call sets up fully, and later calls are not stuck
    again = solver.gradient(np.array([2e-3]))
    assert again.primal.converged and again.preconditioner_rebuilt
    assert "kept coarsening" in again.preconditioner_note
    later = solver.gradient(np.array([3e-3]))
    assert later.primal.converged and not later.preconditioner_rebuilt


def test_iteration_growth_sets_up_again_within_the_call():
    problem, L, n = _reaction_diffusion()
    solver = ka.AdjointSolver(problem, rtol=1e-10, warm_start=False)
    first = solver.gradient(np.array([1e9]))
    result = solver.gradient(np.array([1e-3]))
    baseline = max(first.primal.iterations, 3)
    abandoned = result.extra["abandoned_primal"][0]
    assert abandoned.iterations <= 1.5 * baseline + 1
    assert result.preconditioner_rebuilt and result.primal.converged
    reference = _dense_gradient(L, n, problem.rhs.value(None), problem.objective.c, 1e-3)
    assert result.gradient[0] == pytest.approx(reference, rel=1e-6)


def test_without_rebuild_factor_a_failed_solve_raises():
    problem, _, _ = _reaction_diffusion()
    solver = ka.AdjointSolver(problem, maxiter=40, rtol=1e-10, rebuild_factor=None)
    solver.gradient(np.array([1e9]))
    with pytest.raises(ka.ConvergenceError):
        solver.gradient(np.array([1e-3]))


def test_results_do_not_share_memory_with_the_warm_start():
    problem, L, n = _reaction_diffusion(20)
    solver = ka.AdjointSolver(problem, rtol=1e-12)
    first = solver.gradient(np.array([1.0]))
    first.x[:] = np.nan
    first.adjoint[:] = np.nan
    second = solver.gradient(np.array([1.5]))
    reference = _dense_gradient(L, n, problem.rhs.value(None), problem.objective.c, 1.5)
    assert second.gradient[0] == pytest.approx(reference, rel=1e-8)


def test_a_failed_solve_is_not_a_warm_start():
    problem, L, n = _reaction_diffusion(20)
    solver = ka.AdjointSolver(problem, rtol=1e-12, maxiter=2, preconditioner="none",
                              raise_on_failure=False)
    failed = solver.gradient(np.array([1.0]))
    assert not failed.primal.converged
    assert solver._warm == {}


def test_prepare_runs_once_per_new_theta():
    calls = []
    n = 5
    op = ka.ParametricOperator(lambda t, x: t * x, vjp=lambda t, x, l: l * x, n=n,
                               structure="spd", prepare=lambda t: calls.append(t.copy()))
    problem = ka.AdjointProblem(op, np.ones(n), ka.LinearFunctional(np.ones(n)), n_params=n)
    # (the derivative check at the first gradient prepares θ ± h dθ too)
    solver = ka.AdjointSolver(problem, rtol=1e-12, check_gradient=False)
    theta = np.arange(1.0, n + 1)
    solver.gradient(theta)
    solver.gradient(theta.copy())
    solver.objective(theta)
    assert len(calls) == 1
    solver.gradient(theta + 1)
    assert len(calls) == 2 and np.array_equal(calls[1], theta + 1)


def _affine_problem(*, vjp_scale=1.0, rhs_scale=1.0, direct_scale=1.0, n=30):
    """A(θ) = T + diag(θ), b(θ) = 1 + θ², J = ½‖x‖² + ½‖θ‖²: each derivative callback scaled."""
    T = sp.diags([-1.0, 3.0, -1.2], [-1, 0, 1], (n, n)).tocsr()
    op = ka.ParametricOperator(lambda t, x: T @ x + t * x, rmatvec=lambda t, y: T.T @ y + t * y,
                               vjp=lambda t, x, l: vjp_scale * l * x, n=n,
                               assemble=lambda t: (T + sp.diags(t)).tocsr())
    rhs = ka.RightHandSide(lambda t: 1 + t**2, vjp=lambda t, l: rhs_scale * 2 * t * l)
    objective = ka.Objective(J=lambda t, x: 0.5 * float(x @ x + t @ t), dJ_dx=lambda t, x: x,
                             dJ_dtheta=lambda t, x: direct_scale * t)
    return ka.AdjointProblem(op, rhs, objective, n_params=n), T


@pytest.mark.parametrize(("defect", "culprit"), [
    ({"vjp_scale": -1.0}, "operator.vjp"), ({"vjp_scale": 2.0}, "operator.vjp"),
    ({"rhs_scale": -1.0}, "rhs.vjp"), ({"direct_scale": 0.5}, "objective.grad_theta")])
def test_a_wrong_derivative_callback_is_refused_naming_it(defect, culprit):
    problem, _ = _affine_problem(**defect)
    with pytest.raises(ka.CallbackError, match="difference quotient") as info:
        ka.AdjointSolver(problem, preconditioner="jacobi").gradient(np.linspace(0.5, 1.5, 30))
    assert info.value.callback == culprit


def test_right_derivative_callbacks_pass_the_check_and_match_the_dense_gradient():
    problem, T = _affine_problem()
    theta = np.linspace(0.5, 1.5, 30)
    result = ka.AdjointSolver(problem, preconditioner="jacobi", rtol=1e-12).gradient(theta)
    A = T.toarray() + np.diag(theta)
    x = np.linalg.solve(A, 1 + theta**2)
    lam = np.linalg.solve(A.T, x)
    reference = theta - lam * x + 2 * theta * lam
    assert np.allclose(result.gradient, reference, rtol=1e-8, atol=1e-10)
    assert "check" in result.times


def test_an_operator_that_writes_into_its_input_is_told_so():
    def matvec(theta, x):
        x *= 2.0  # the defect: modifies its (read-only) input
        return x

    op = ka.ParametricOperator(matvec, vjp=lambda t, x, l: l * x, n=5, structure="spd")
    problem = ka.AdjointProblem(op, np.ones(5), ka.LinearFunctional(np.ones(5)), n_params=5)
    with pytest.raises(ka.CallbackError, match="must not modify its input") as info:
        ka.AdjointSolver(problem, preconditioner="none").gradient(np.ones(5))
    assert info.value.callback == "operator.matvec"


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=[pytest.mark.skip(reason=petsc_missing())] if b != "serial"
                 and petsc_missing() else []) for b in BACKENDS])
def test_a_new_set_up_keeps_the_coarsening_and_a_full_one_can_be_forced(backend):
    """AMG set up again at a new θ keeps its interpolation (PETSc GAMG's default, the serial
    AMG's ``refreshed``); when the rule asks for a full set-up it is one. Both give the dense
    gradient."""
    model = ka.gallery.diffusion_2d(20)
    rng = np.random.default_rng(5)
    thetas = [model.theta + 0.5 * rng.standard_normal(model.theta.size) for _ in range(3)]
    family = "serial" if backend == "serial" else "petsc"
    with run(family, model, method="cg", preconditioner="amg", rtol=1e-11) as r:
        first = r.solver.gradient(r.local(thetas[0]))
        assert first.preconditioner_rebuilt and "coarsening kept" not in \
            first.preconditioner_note
        r.solver.rebuild_preconditioner()
        kept = r.solver.gradient(r.local(thetas[1]))
        assert kept.preconditioner_rebuilt and "coarsening kept" in kept.preconditioner_note
        r.solver.reuse.full_rate = None  # as after a kept coarsening found too slow
        r.solver.rebuild_preconditioner()
        full = r.solver.gradient(r.local(thetas[2]))
        assert full.preconditioner_rebuilt and "coarsening kept" not in full.preconditioner_note
        for theta, result in zip(thetas, (first, kept, full), strict=True):
            reference = dense_reference(model, theta).gradient
            assert relative_error(r.whole_gradient(result), reference) <= 1e-8
        assert r.solver.setups == 3

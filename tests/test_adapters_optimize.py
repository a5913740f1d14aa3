"""scipy.optimize adapter: remembered evaluations, history, logging, convergence."""

from __future__ import annotations

import builtins
import logging
import pickle
import types

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint.adapters import ScipyObjective, affine_operator, minimize

N = 30
P = N


def recovery_problem(theta_true: np.ndarray) -> ka.AdjointProblem:
    """Reaction–diffusion ``(0.2 L + diag θ) x = 1`` with full-field data, tiny Tikhonov."""
    L = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N), format="csr")
    terms = [sp.csr_matrix(([1.0], ([k], [k])), shape=(N, N)) for k in range(P)]
    op = affine_operator(0.2 * L, terms, structure="spd")
    f = np.ones(N)
    data = np.linalg.solve(op.matrix(theta_true).toarray(), f)
    objective = ka.LeastSquaresMisfit(None, data) + ka.Tikhonov(1e-12, theta_ref=np.ones(P))
    return ka.AdjointProblem(op, f, objective, n_params=P)


def counting_solver(problem: ka.AdjointProblem, **options) -> tuple[ka.AdjointSolver, list]:
    solver = ka.AdjointSolver(problem, preconditioner="jacobi", rtol=1e-12, **options)
    calls: list[np.ndarray] = []
    gradient = solver.gradient

    def counted(theta, **options):
        calls.append(np.array(theta))
        return gradient(theta, **options)

    solver.gradient = counted
    return solver, calls


@pytest.fixture
def theta_true() -> np.ndarray:
    return np.random.default_rng(3).uniform(0.5, 2.0, P)


def test_minimize_recovers_the_parameters(theta_true):
    solver, calls = counting_solver(recovery_problem(theta_true))
    res = minimize(solver, np.ones(P), bounds=scipy.optimize.Bounds(0.1, 10.0),
                   options={"maxiter": 500, "ftol": 1e-16, "gtol": 1e-11})
    assert res.success, res.message
    np.testing.assert_allclose(res.x, theta_true, rtol=1e-4)
    assert res.n_solves == len(calls) == len(res.evaluations)
    assert len(res.history) == res.nit
    assert res.history[-1]["objective"] == pytest.approx(res.fun)
    assert sum(h["primal_iterations"] for h in res.history) <= sum(
        e["primal_iterations"] for e in res.evaluations)


def test_remembered_theta_does_not_solve_again(theta_true):
    solver, calls = counting_solver(recovery_problem(theta_true))
    fun = ScipyObjective(solver)
    theta = np.full(P, 1.5)
    J, g = fun(theta)
    assert len(calls) == 1
    assert fun.value(theta.copy()) == J
    np.testing.assert_array_equal(fun.gradient(theta), g)
    assert len(calls) == 1 and fun.n_calls == 3 and fun.n_solves == 1
    g[:] = 0.0  # the caller's copy: the remembered gradient is untouched
    assert np.linalg.norm(fun.gradient(theta)) > 0
    fun(theta + 0.1)
    assert len(calls) == 2
    fun(theta)  # still remembered (a few recent points are kept)
    assert len(calls) == 2


def test_value_then_gradient_costs_one_solve_in_scipy(theta_true):
    solver, calls = counting_solver(recovery_problem(theta_true))
    fun = ScipyObjective(solver)
    res = scipy.optimize.minimize(fun.value, np.ones(P), jac=fun.gradient, method="L-BFGS-B",
                                  bounds=[(0.1, 10.0)] * P, options={"maxiter": 5})
    assert fun.n_calls == res.nfev + res.njev
    assert len(calls) == res.nfev


def test_progress_is_logged(theta_true, caplog):
    solver, _ = counting_solver(recovery_problem(theta_true))
    with caplog.at_level(logging.INFO, logger="krylov_adjoint.optimize"):
        res = minimize(solver, np.ones(P), bounds=[(0.1, 10.0)] * P, options={"maxiter": 3})
    records = [r for r in caplog.records if r.name == "krylov_adjoint.optimize"]
    evaluations = [r.getMessage() for r in records if r.getMessage().startswith("evaluation")]
    iterations = [r.getMessage() for r in records if r.getMessage().startswith("iteration")]
    assert len(evaluations) == res.n_solves and len(iterations) == res.nit
    first = evaluations[0]
    assert "J = " in first and "|g| = " in first and "primal" in first and "adjoint" in first
    assert "preconditioner set up" in first
    assert "preconditioner reused" in evaluations[1]


def test_callback_accepts_a_bare_iterate_and_unknown_points(theta_true):
    solver, calls = counting_solver(recovery_problem(theta_true))
    fun = ScipyObjective(solver)
    theta = np.full(P, 1.2)
    J, g = fun(theta)
    fun.callback(theta)  # legacy callbacks pass xk only
    assert fun.history[0]["objective"] == J
    assert fun.history[0]["gradient_norm"] == pytest.approx(np.linalg.norm(g))
    fun.callback(scipy.optimize.OptimizeResult(x=theta + 1.0, fun=0.5))
    assert fun.history[1]["objective"] == 0.5 and np.isnan(fun.history[1]["gradient_norm"])
    assert len(calls) == 1  # a callback never solves


def test_user_callback_is_chained(theta_true):
    solver, _ = counting_solver(recovery_problem(theta_true))
    seen = []
    res = minimize(solver, np.ones(P), bounds=[(0.1, 10.0)] * P, options={"maxiter": 4},
                   callback=lambda intermediate_result: seen.append(intermediate_result.fun))
    assert len(seen) == res.nit == len(res.history)


def test_progress_without_tqdm_warns_and_continues(theta_true, monkeypatch, caplog):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm":
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    monkeypatch.delitem(__import__("sys").modules, "tqdm", raising=False)
    solver, _ = counting_solver(recovery_problem(theta_true))
    with caplog.at_level(logging.WARNING, logger="krylov_adjoint.optimize"):
        res = minimize(solver, np.ones(P), bounds=[(0.1, 10.0)] * P, options={"maxiter": 2},
                       progress=True)
    assert res.nit >= 1
    assert any("tqdm is not installed" in r.getMessage() for r in caplog.records)


def test_progress_bar_is_updated_per_iteration(theta_true, monkeypatch):
    """A stand-in tqdm module: the bar advances once per iteration and is closed."""
    bars = []

    class Bar:
        def __init__(self, **kwargs):
            self.updates, self.postfix, self.closed = 0, None, False
            bars.append(self)

        def update(self, n):
            self.updates += n

        def set_postfix(self, **kwargs):
            self.postfix = kwargs

        def close(self):
            self.closed = True

    monkeypatch.setitem(__import__("sys").modules, "tqdm", types.SimpleNamespace(tqdm=Bar))
    solver, _ = counting_solver(recovery_problem(theta_true))
    res = minimize(solver, np.ones(P), bounds=[(0.1, 10.0)] * P, options={"maxiter": 3},
                   progress=True)
    assert len(bars) == 1 and bars[0].updates == res.nit and bars[0].closed
    assert set(bars[0].postfix) == {"J", "g"}


def test_refuses_something_else_than_a_solver():
    with pytest.raises(TypeError, match="AdjointSolver"):
        ScipyObjective(lambda theta: (0.0, theta))


def failing_after(solver: ka.AdjointSolver, successes: int) -> ka.AdjointSolver:
    """``solver`` whose gradient raises a genuine ConvergenceError after ``successes`` solves."""
    gradient = solver.gradient
    count = {"solves": 0}

    def gradient_or_failure(theta, **options):
        count["solves"] += 1
        if count["solves"] > successes:  # a solve stopped after one iteration
            ka.krylov.solve(sp.diags(np.arange(1.0, N + 1.0)), np.ones(N), maxiter=1,
                            rtol=1e-14, raise_on_failure=True, phase="primal")
        return gradient(theta, **options)

    solver.gradient = gradient_or_failure
    return solver


def test_minimize_keeps_the_history_when_a_solve_fails(theta_true):
    solver = failing_after(ka.AdjointSolver(recovery_problem(theta_true), rtol=1e-12), 6)
    with pytest.raises(ka.ConvergenceError) as info:
        minimize(solver, np.ones(P), bounds=[(0.1, 10.0)] * P)
    err = info.value
    assert len(err.evaluations) == 6
    assert [e["evaluation"] for e in err.evaluations] == list(range(1, 7))
    assert all(np.isfinite(e["objective"]) for e in err.evaluations)
    assert len(err.history) >= 1
    assert err.history[-1]["solves"] <= 6
    assert any("gradient evaluation 7" in note for note in getattr(err, "__notes__", []))
    restored = pickle.loads(pickle.dumps(err))
    assert restored.evaluations == err.evaluations and restored.history == err.history


def test_scipy_objective_attaches_copies_of_its_records(theta_true):
    solver = failing_after(ka.AdjointSolver(recovery_problem(theta_true), rtol=1e-12), 1)
    fun = ScipyObjective(solver)
    fun(np.ones(P))
    with pytest.raises(ka.ConvergenceError) as info:
        fun(2 * np.ones(P))
    assert info.value.evaluations == fun.evaluations
    assert info.value.evaluations is not fun.evaluations
    assert info.value.history == fun.history == []

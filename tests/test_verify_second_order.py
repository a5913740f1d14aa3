"""Verification of second order on both backends: the Hessian's Taylor tests (rates 3 and 2),
its symmetry (and the Gauss–Newton one's), and each second-order callback, with injected
defects named; the same checks on 2 ranks under mpirun."""

from __future__ import annotations

import numpy as np
import pytest
import test_hessian as model_hessian
from conftest import petsc_missing, run

import krylov_adjoint as ka
from krylov_adjoint import gallery
from krylov_adjoint import verify as kv

BACKENDS = [pytest.param("serial"),
            pytest.param("petsc", marks=pytest.mark.skipif(petsc_missing() is not None,
                                                           reason=str(petsc_missing())))]


def hand_written(**callbacks) -> gallery.ModelProblem:
    """tests/test_hessian.py's model (every kind of second-order term) as a ModelProblem;
    ``callbacks`` replace some of its callbacks (see :func:`broken`)."""
    problem = model_hessian.problem()
    if callbacks:
        problem = rebuild(problem, **callbacks)
    return gallery.ModelProblem(problem, model_hessian.THETA.copy(), "hand-written",
                                (model_hessian.N,))


MODELS = {
    "diffusion": lambda: gallery.diffusion_2d(6, 5),
    "convection": lambda: gallery.convection_diffusion_2d(6, 5),
    "heat": lambda: gallery.heat_1d(20),
    "hand": hand_written,
}


def rebuild(problem: ka.AdjointProblem, **replace) -> ka.AdjointProblem:
    """The problem with some callbacks replaced: operator ``vjp_jvp``/``jvp_transpose``,
    ``rhs_vjp_jvp``, objective ``d2J_*`` (given in the user's argument order)."""
    op, rhs, J = problem.operator, problem.rhs, problem.objective
    operator = ka.ParametricOperator(
        op.matvec, n=op.n, rmatvec=None if op.symmetric_rmatvec else op.rmatvec, vjp=op.vjp,
        jvp=op.jvp, structure=op.structure.value, assemble=op.assemble,
        vjp_jvp=replace.get("vjp_jvp", op.vjp_jvp),
        jvp_transpose=replace.get("jvp_transpose", op.jvp_transpose))
    b = ka.RightHandSide(rhs.value, vjp=rhs.vjp, jvp=rhs.jvp,
                         vjp_jvp=replace.get("rhs_vjp_jvp", rhs.vjp_jvp))
    second = {name: replace.get(name, getattr(J, method)) for name, method in (
        ("d2J_dx2", "hess_xx"), ("d2J_dxdtheta", "hess_xtheta"),
        ("d2J_dthetadx", "hess_thetax"), ("d2J_dtheta2", "hess_thetatheta"))}
    # the internal methods take (x, θ, v); the user's callbacks (θ, x, v)
    second = {name: (fn if name in replace else
                     (lambda m: lambda th, x, v: m(x, th, v))(fn))
              for name, fn in second.items()}
    objective = ka.Objective(J=lambda th, x: J.value(x, th), dJ_dx=lambda th, x: J.grad_x(x, th),
                             dJ_dtheta=lambda th, x: J.grad_theta(x, th), **second)
    return ka.AdjointProblem(operator, b, objective, n_params=problem.n_params)


# -- the Hessian's Taylor tests and symmetry --------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_hessian_checks_pass_with_the_expected_rates(backend, name):
    model = MODELS[name]()
    with run(backend, model, rtol=1e-12, preconditioner="none") as r:
        theta = r.local(model.theta)
        third = kv.second_order_taylor_test(r.solver, theta, rng=0)
        assert third.passed and third.order == 3, third.summary()
        assert np.all(np.abs(third.rates[third.usable] - 3) <= 0.1), third.summary()
        assert third.usable.sum() >= 2
        second = kv.hessian_gradient_test(r.solver, theta, rng=0)
        assert second.passed, second.summary()
        assert np.all(np.abs(second.rates[second.usable] - 2) <= 0.1), second.summary()
        for gauss_newton in (False, True):
            symmetry = kv.hessian_symmetry_test(r.solver, theta, gauss_newton=gauss_newton,
                                                rng=0)
            assert symmetry.passed, symmetry.summary()
        assert symmetry.name == "gauss_newton.symmetry"


def test_taylor_report_generalises_the_order():
    fun = lambda th: float(np.sum(np.sin(th)))  # noqa: E731
    theta = np.array([0.3, 1.2, -0.5])
    report = kv.taylor_test(fun, theta, np.cos(theta), rng=0)
    assert report.order == 2 and report.name == "gradient.taylor"
    assert "Taylor test PASSED" in report.summary()
    assert report.as_check().name == "gradient.taylor"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_hessian_term_fails_the_taylor_tests(backend):
    model = hand_written(vjp_jvp=lambda th, x, lam, d: -model_hessian.problem().operator
                         .vjp_jvp(th, x, lam, d))
    with run(backend, model, rtol=1e-12, preconditioner="none") as r:
        theta = r.local(model.theta)
        third = kv.second_order_taylor_test(r.solver, theta, rng=0)
        assert not third.passed and round(third.rates[-1]) == 2, third.summary()
        second = kv.hessian_gradient_test(r.solver, theta, rng=0)
        assert not second.passed and round(second.rates[-1]) == 1, second.summary()
        # the term is symmetric itself: the symmetry test cannot see it
        assert kv.hessian_symmetry_test(r.solver, theta, rng=0).passed


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_jvp_transpose_breaks_the_symmetry(backend):
    good = model_hessian.problem().operator
    model = hand_written(jvp_transpose=lambda th, y, d: 2 * good.jvp_transpose(th, y, d))
    with run(backend, model, rtol=1e-12, preconditioner="none") as r:
        report = kv.hessian_symmetry_test(r.solver, r.local(model.theta), rng=0)
        assert not report.passed and report.name == "hessian.symmetry", report.summary()


# -- each second-order callback, and check_problem naming the broken one -----------------------
def problem_on(backend: str, model: gallery.ModelProblem):
    if backend == "serial":
        return model.problem
    from conftest import distributed_problem

    return distributed_problem(model)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_each_second_order_callback_passes_on_correct_problems(backend, name):
    model = MODELS[name]()
    problem, theta = problem_on(backend, model), model.theta
    if backend == "petsc":
        theta = problem.theta_layout.local_part(theta)
    reports = [kv.operator_vjp_jvp_test(problem, theta, rng=0),
               kv.operator_jvp_transpose_test(problem, theta, rng=0),
               kv.rhs_vjp_jvp_test(problem, theta, rng=0),
               *kv.objective_hessian_test(problem, theta, rng=0).reports]
    for report in reports:
        assert isinstance(report, kv.DerivativeReport) and report.passed, report.summary()
    assert not reports[0].skipped and not reports[1].skipped and not reports[3].skipped
    if name == "hand":
        assert not any(r.skipped for r in reports)


def _good():
    problem = model_hessian.problem()
    return problem.operator, problem.rhs, problem.objective


#: One injected defect per second-order callback: (callback replaced, the broken callback).
DEFECTS = {
    "operator.vjp_jvp": ("vjp_jvp", lambda th, x, lam, d: -_good()[0].vjp_jvp(th, x, lam, d)),
    "operator.jvp_transpose": ("jvp_transpose",
                               lambda th, y, d: 2 * _good()[0].jvp_transpose(th, y, d)),
    "rhs.vjp_jvp": ("rhs_vjp_jvp", lambda th, lam, d: -_good()[1].vjp_jvp(th, lam, d)),
    "objective.d2J_dx2": ("d2J_dx2", lambda th, x, v: 1.5 * v),
    "objective.d2J_dxdtheta": ("d2J_dxdtheta",
                               lambda th, x, d: -model_hessian.GAMMA * d),
    "objective.d2J_dthetadx": ("d2J_dthetadx",
                               lambda th, x, v: 2 * model_hessian.GAMMA * v),
    "objective.d2J_dtheta2": ("d2J_dtheta2", lambda th, x, d: -model_hessian.ALPHA * d),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("culprit", list(DEFECTS))
def test_check_problem_names_the_broken_second_order_callback(backend, culprit):
    keyword, broken = DEFECTS[culprit]
    model = hand_written(**{keyword: broken})
    problem, theta = problem_on(backend, model), model.theta
    if backend == "petsc":
        theta = problem.theta_layout.local_part(theta)
    report = kv.check_problem(problem, theta, rng=0)
    assert not report.passed
    assert report.failures[0] == culprit, report.summary()
    # the first-order checks and the gradient are unaffected
    for name in ("operator.vjp", "rhs.vjp", "objective.grad_x", "gradient.taylor"):
        assert name not in report.failures, report.summary()
    # the Hessian's own checks see every defect
    assert set(report.failures) & {"hessian.taylor", "hessian.gradient", "hessian.symmetry",
                                   "gauss_newton.symmetry"}, report.summary()
    if culprit == "operator.vjp_jvp":
        assert {"hessian.taylor", "hessian.gradient"} <= set(report.failures)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_second_order_callbacks_are_skipped_and_named(backend):
    model = gallery.ModelProblem(model_hessian.problem(second_order=False),
                                 model_hessian.THETA.copy(), "no-second-order", (12,))
    problem, theta = problem_on(backend, model), model.theta
    if backend == "petsc":
        theta = problem.theta_layout.local_part(theta)
    report = kv.check_problem(problem, theta, rng=0)
    assert report.passed, report.summary()
    rows = {c.name: c for c in report.checks}
    for name in ("operator.vjp_jvp", "rhs.vjp_jvp"):
        assert rows[name].skipped and rows[name].detail == "not supplied", rows[name]
    for name in ("hessian.taylor", "hessian.gradient", "hessian.symmetry"):
        assert rows[name].skipped and "operator.vjp_jvp" in rows[name].detail
    assert not rows["gauss_newton.symmetry"].skipped and rows["gauss_newton.symmetry"].passed
    assert "hessian.taylor" not in kv.check_problem(problem, theta, rng=0,
                                                    second_order=False).names


def test_per_callback_checks_fail_on_defects():
    for culprit, (keyword, broken) in DEFECTS.items():
        problem = hand_written(**{keyword: broken}).problem
        reports = [kv.operator_vjp_jvp_test(problem, model_hessian.THETA, rng=0),
                   kv.operator_jvp_transpose_test(problem, model_hessian.THETA, rng=0),
                   kv.rhs_vjp_jvp_test(problem, model_hessian.THETA, rng=0),
                   *kv.objective_hessian_test(problem, model_hessian.THETA, rng=0).reports]
        assert [r.name for r in reports if not r.passed] == [culprit]


@pytest.mark.mpi
def test_second_order_checks_under_mpirun_on_two_ranks():
    from test_petsc_mpi import run_mpi

    records, _, _ = run_mpi("verify_second_order.py", 2, timeout=200)
    for r in records:
        for name in MODELS:
            assert r[f"{name}_passed"], (name, r)
            assert {"operator.vjp_jvp", "hessian.taylor", "hessian.gradient",
                    "hessian.symmetry", "gauss_newton.symmetry"} <= set(r[f"{name}_names"])
            third, second = r[f"{name}_third_order_rates"], r[f"{name}_second_order_rates"]
            assert third and all(abs(rate - 3) <= 0.1 for rate in third), (name, third)
            assert second and all(abs(rate - 2) <= 0.1 for rate in second), (name, second)
        failures = r["operator.vjp_jvp_failures"]
        assert failures[0] == "operator.vjp_jvp" and "hessian.taylor" in failures, r
        assert r["objective.d2J_dthetadx_failures"][0] == "objective.d2J_dthetadx", r
    assert records[0] == {**records[1], "rank": 0}

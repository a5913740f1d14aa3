"""The verification tools pass on correct callbacks and fail, naming the culprit, on wrong ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint.precond import ILUPreconditioner, JacobiPreconditioner
from krylov_adjoint.verify import (
    CheckResult,
    DerivativeReport,
    DotTestReport,
    TaylorReport,
    VerificationReport,
    check_problem,
    dot_test,
    objective_gradient_test,
    operator_dot_test,
    operator_jvp_test,
    operator_vjp_test,
    preconditioner_dot_test,
    rhs_jvp_test,
    rhs_vjp_test,
    taylor_test,
    taylor_test_solver,
)

N, P = 60, 4


# -- a small affine problem whose callbacks can be broken one at a time --------------------
class Affine:
    """A(θ) = A₀ + Σ θₖ Aₖ (sparse, nonsymmetric, diagonally dominant), b(θ) = b₀ + Bθ."""

    def __init__(self, n: int = N, p: int = P, seed: int = 0, symmetric: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.p = n, p

        def rand() -> sp.csr_matrix:
            M = sp.random(n, n, density=0.08, random_state=rng, format="csr")
            M.data = rng.uniform(-1, 1, M.data.size)
            return (M + M.T).tocsr() if symmetric else M

        self.Ak = [0.3 * rand() for _ in range(p)]
        off = rand()
        margin = 1.0 + sum(abs(M).sum(axis=1).max() for M in self.Ak) * 2.0
        self.A0 = (off + sp.diags(np.asarray(abs(off).sum(axis=1)).ravel() + margin)).tocsr()
        self.b0 = rng.standard_normal(n)
        self.B = rng.standard_normal((n, p))
        self.theta = rng.uniform(-1, 1, p)

    def A(self, th: np.ndarray) -> sp.csr_matrix:
        return (self.A0 + sum(t * M for t, M in zip(th, self.Ak, strict=True))).tocsr()

    def matvec(self, th, x):
        return self.A(th) @ x

    def rmatvec(self, th, y):
        return self.A(th).T @ y

    def vjp(self, th, x, lam):
        return np.array([lam @ (M @ x) for M in self.Ak])

    def jvp(self, th, x, dth):
        return sum(d * (M @ x) for d, M in zip(dth, self.Ak, strict=True))

    def b(self, th):
        return self.b0 + self.B @ th

    def b_vjp(self, th, lam):
        return self.B.T @ lam

    def b_jvp(self, th, dth):
        return self.B @ dth

    def problem(self, objective: ka.Objective | None = None, structure: str = "general",
                **override) -> ka.AdjointProblem:
        cb = {"matvec": self.matvec, "rmatvec": self.rmatvec, "vjp": self.vjp,
              "jvp": self.jvp, "b": self.b, "b_vjp": self.b_vjp, "b_jvp": self.b_jvp,
              **override}
        op = ka.ParametricOperator(cb["matvec"], n=self.n, rmatvec=cb["rmatvec"],
                                   vjp=cb["vjp"], jvp=cb["jvp"], structure=structure,
                                   assemble=self.A)
        rhs = ka.RightHandSide(cb["b"], vjp=cb["b_vjp"], jvp=cb["b_jvp"])
        if objective is None:
            d = np.linspace(-1.0, 1.0, self.n)
            objective = ka.LeastSquaresMisfit(None, d) + ka.Tikhonov(0.1)
        return ka.AdjointProblem(op, rhs, objective, n_params=self.p)


@pytest.fixture(scope="module")
def affine() -> Affine:
    return Affine()


def custom_objective(grad_theta=True, factor=1.0) -> ka.Objective:
    """J(x, θ) = Σ log(1 + xᵢ²) + θᵀC x; ``factor`` scales grad_x (1 is correct)."""
    C = np.random.default_rng(5).standard_normal((P, N)) / N
    return ka.Objective(
        J=lambda th, x: float(np.sum(np.log1p(x**2)) + th @ (C @ x)),
        dJ_dx=lambda th, x: factor * 2 * x / (1 + x**2) + C.T @ th,
        dJ_dtheta=(lambda th, x: C @ x) if grad_theta else None,
    )


# -- dot-product tests ---------------------------------------------------------------------
def test_dot_test_passes_on_a_true_transpose_and_fails_on_a_false_one(capsys):
    A = sp.random(40, 25, density=0.2, random_state=1, format="csr")
    good = dot_test(lambda u: A @ u, lambda v: A.T @ v, A.shape, rng=0)
    assert isinstance(good, DotTestReport)
    assert good.passed and good.error < 1e-14 and good.errors.shape == (3,)
    B = sp.random(30, 30, density=0.2, random_state=2, format="csr")
    bad = dot_test(lambda u: B @ u, lambda v: B @ v, B.shape, rng=0)
    assert not bad.passed and 1e-3 < bad.error <= 1.0
    assert "FAILED" in bad.summary() and "rmatvec" in bad.summary()
    assert capsys.readouterr() == ("", "")


def test_dot_test_error_is_scale_invariant_and_reproducible():
    A = sp.random(30, 30, density=0.2, random_state=3, format="csr")
    for scale in (1e-12, 1.0, 1e12):
        S = scale * A
        assert dot_test(lambda u, S=S: S @ u, lambda v, S=S: S.T @ v, S.shape, rng=4).passed
    first = dot_test(lambda u: A @ u, lambda v: A @ v, A.shape, rng=7, trials=5)
    second = dot_test(lambda u: A @ u, lambda v: A @ v, A.shape, rng=7, trials=5)
    np.testing.assert_array_equal(first.errors, second.errors)
    assert first.errors.size == 5


def test_dot_test_names_a_callback_returning_the_wrong_shape():
    with pytest.raises(ka.CallbackError) as info:
        dot_test(lambda u: u, lambda v: v[:-1], (5, 5), rng=0)
    assert info.value.callback == "rmatvec"
    with pytest.raises(ka.NonFiniteError) as info:
        dot_test(lambda u: u * np.nan, lambda v: v, (5, 5), rng=0)
    assert info.value.callback == "matvec"


def test_operator_dot_test(affine):
    assert operator_dot_test(affine.problem(), affine.theta, rng=0).passed
    wrong = operator_dot_test(affine.problem(rmatvec=affine.matvec), affine.theta, rng=0)
    assert not wrong.passed and wrong.name == "operator.rmatvec"


def test_operator_dot_test_catches_a_false_symmetry_declaration(affine):
    problem = affine.problem(structure="symmetric", rmatvec=None)
    assert not operator_dot_test(problem, affine.theta, rng=0).passed
    sym = Affine(symmetric=True)
    assert operator_dot_test(sym.problem(structure="symmetric", rmatvec=None), sym.theta,
                             rng=0).passed


class ApplyOnly:
    """A preconditioner following the protocol only (no base class): M = (D + L)⁻¹."""

    def __init__(self, A: sp.csr_matrix, transpose_is_apply: bool = False) -> None:
        self.lower = sp.tril(A, format="csr")
        self.shape = A.shape
        self.transpose_is_apply = transpose_is_apply

    def apply(self, r):
        return sp.linalg.spsolve_triangular(self.lower, r, lower=True)

    def apply_transpose(self, r):
        if self.transpose_is_apply:
            return self.apply(r)
        return sp.linalg.spsolve_triangular(self.lower.T.tocsr(), r, lower=False)


@pytest.mark.parametrize("build", [
    pytest.param(lambda A: JacobiPreconditioner(A), id="jacobi"),
    pytest.param(lambda A: ILUPreconditioner(A, drop_tol=1e-3), id="ilu"),
    pytest.param(lambda A: ILUPreconditioner(A, drop_tol=1e-3).T, id="ilu-transposed"),
    pytest.param(lambda A: ApplyOnly(A), id="gauss-seidel-protocol-only"),
])
def test_preconditioner_dot_test_passes_on_true_transposes(affine, build):
    report = preconditioner_dot_test(build(affine.A(affine.theta)), rng=0)
    assert report.passed and report.name == "preconditioner.apply_transpose"


def test_preconditioner_dot_test_fails_when_apply_transpose_is_apply(affine):
    M = ApplyOnly(affine.A(affine.theta), transpose_is_apply=True)
    report = preconditioner_dot_test(M, rng=0)
    assert not report.passed and report.error > 1e-4


def test_preconditioner_dot_test_refuses_an_object_without_apply_transpose():
    class Half:
        shape = (3, 3)

        def apply(self, r):
            return r

    with pytest.raises(TypeError, match="apply_transpose"):
        preconditioner_dot_test(Half())


# -- derivative tests ----------------------------------------------------------------------
def wrong_sign(vjp):
    return lambda *args: -vjp(*args)


def half(vjp):
    return lambda *args: 0.5 * vjp(*args)


def one_entry_off(vjp):
    def broken(*args):
        out = np.array(vjp(*args), dtype=float)
        out[-1] *= 1.01
        return out
    return broken


BREAKS = [pytest.param(wrong_sign, id="sign"), pytest.param(half, id="missing-factor"),
          pytest.param(one_entry_off, id="one-entry-1%-off")]


@pytest.mark.parametrize("reference", ["jvp", "fd"])
def test_operator_vjp_test_passes_on_the_right_vjp(affine, reference):
    report = operator_vjp_test(affine.problem(), affine.theta, reference=reference, rng=0)
    assert isinstance(report, DerivativeReport)
    assert report.passed, report.summary()
    assert report.reference == ("operator.jvp" if reference == "jvp" else "central difference")
    assert report.rtol == (1e-8 if reference == "jvp" else 1e-6)


@pytest.mark.parametrize("reference", ["jvp", "fd"])
@pytest.mark.parametrize("breaker", BREAKS)
def test_operator_vjp_test_fails_on_a_wrong_vjp(affine, breaker, reference):
    problem = affine.problem(vjp=breaker(affine.vjp))
    report = operator_vjp_test(problem, affine.theta, reference=reference, rng=0, trials=5)
    assert not report.passed and report.name == "operator.vjp"


def test_operator_vjp_test_uses_finite_differences_for_a_nonlinear_operator():
    """A(θ) = diag(exp(θ)) + S: no JVP, so a central difference is the reference."""
    S = sp.random(20, 20, density=0.2, random_state=0, format="csr")
    op = ka.ParametricOperator(lambda th, x: np.exp(th) * x + S @ x, n=20,
                               rmatvec=lambda th, y: np.exp(th) * y + S.T @ y,
                               vjp=lambda th, x, lam: np.exp(th) * x * lam)
    problem = ka.AdjointProblem(op, np.ones(20), ka.LinearFunctional(np.ones(20)), n_params=20)
    theta = np.linspace(-2, 2, 20)
    report = operator_vjp_test(problem, theta, rng=0)
    assert report.passed and report.reference == "central difference" and report.step > 0
    with pytest.raises(ValueError, match="operator.jvp"):
        operator_vjp_test(problem, theta, reference="jvp")


def test_operator_jvp_test(affine):
    assert operator_jvp_test(affine.problem(), affine.theta, rng=0).passed
    broken = affine.problem(jvp=lambda th, x, d: 1.5 * affine.jvp(th, x, d))
    assert not operator_jvp_test(broken, affine.theta, rng=0).passed


def test_derivative_tests_skip_what_does_not_depend_on_theta():
    problem = ka.AdjointProblem(sp.identity(5, format="csr"), np.ones(5),
                                ka.LinearFunctional(np.ones(5)), n_params=2)
    for test in (operator_vjp_test, operator_jvp_test, rhs_vjp_test, rhs_jvp_test):
        report = test(problem, np.zeros(2))
        assert report.skipped and report.passed and "θ" in report.note
        assert report.as_check().status == "skipped"


@pytest.mark.parametrize("reference", ["jvp", "fd"])
def test_rhs_vjp_test(affine, reference):
    assert rhs_vjp_test(affine.problem(), affine.theta, reference=reference, rng=0).passed
    for breaker in (wrong_sign, half, one_entry_off):
        problem = affine.problem(b_vjp=breaker(affine.b_vjp))
        report = rhs_vjp_test(problem, affine.theta, reference=reference, rng=0, trials=5)
        assert not report.passed and report.name == "rhs.vjp"


def test_rhs_jvp_test(affine):
    assert rhs_jvp_test(affine.problem(), affine.theta, rng=0).passed
    broken = affine.problem(b_jvp=lambda th, d: -affine.b_jvp(th, d))
    assert not rhs_jvp_test(broken, affine.theta, rng=0).passed


@pytest.mark.parametrize("objective", [
    pytest.param(lambda: ka.LinearFunctional(np.arange(N, dtype=float)), id="linear"),
    pytest.param(lambda: ka.LeastSquaresMisfit(sp.random(10, N, density=0.3, random_state=0),
                                               np.ones(10)) + ka.Tikhonov(0.5), id="misfit"),
    pytest.param(lambda: custom_objective(), id="custom"),
])
def test_objective_gradient_test_passes_on_right_partials(affine, objective):
    report = objective_gradient_test(affine.problem(objective()), affine.theta, rng=0)
    assert report.passed, report.summary()
    names = [c.name for c in report.as_checks()]
    assert names == ["objective.grad_x", "objective.grad_theta"]


def test_objective_gradient_test_fails_on_a_wrong_grad_x(affine):
    report = objective_gradient_test(affine.problem(custom_objective(factor=1.01)),
                                     affine.theta, rng=0)
    assert not report.grad_x.passed and report.grad_theta.passed and not report.passed


def test_objective_gradient_test_fails_on_a_missing_grad_theta(affine):
    report = objective_gradient_test(affine.problem(custom_objective(grad_theta=False)),
                                     affine.theta, rng=0)
    assert report.grad_x.passed and not report.grad_theta.passed


# -- Taylor tests --------------------------------------------------------------------------
LINEAR = np.array([1.0, -2.0, 0.5])


def smooth(theta: np.ndarray) -> float:
    """Σ log(1 + θᵢ²) + cᵀθ + θ₀θ₁θ₂: smooth, with a non-zero gradient at 0."""
    return float(np.sum(np.log1p(theta**2)) + LINEAR @ theta + np.prod(theta))


def smooth_gradient(theta: np.ndarray) -> np.ndarray:
    products = np.array([theta[1] * theta[2], theta[0] * theta[2], theta[0] * theta[1]])
    return 2 * theta / (1 + theta**2) + LINEAR + products


THETAS = [pytest.param(np.array([0.3, -1.2, 2.0]), id="generic"),
          pytest.param(np.zeros(3), id="zero"),
          pytest.param(np.array([1e3, 1.0, 1e-3]), id="badly-scaled")]


@pytest.mark.parametrize("theta", THETAS)
def test_taylor_test_passes_on_the_right_gradient(theta, capsys):
    report = taylor_test(smooth, theta, smooth_gradient(theta), rng=0)
    assert isinstance(report, TaylorReport)
    assert report.passed, report.summary()
    assert 1.9 <= report.min_rate <= report.mean_rate <= 2.1
    assert report.steps.size == 6 and np.allclose(report.steps[:-1] / report.steps[1:], 2)
    assert np.allclose(report.first_order_rates, 1.0, atol=0.1)
    assert capsys.readouterr() == ("", "")


def test_taylor_first_step_is_one_percent_of_theta():
    theta = np.array([3.0, 4.0, 0.0])
    direction = np.array([1.0, 0.0, 0.0])
    report = taylor_test(smooth, theta, smooth_gradient(theta), direction=direction)
    assert report.steps[0] == pytest.approx(1e-2 * 5.0)
    assert report.steps[-1] == pytest.approx(1e-2 * 5.0 / 32)
    report = taylor_test(smooth, np.zeros(3), smooth_gradient(np.zeros(3)),
                         direction=direction)
    assert report.steps[0] == pytest.approx(1e-2)


@pytest.mark.parametrize("theta", THETAS)
def test_taylor_test_fails_on_a_gradient_one_percent_off(theta):
    report = taylor_test(smooth, theta, 1.01 * smooth_gradient(theta), rng=0)
    assert not report.passed
    assert report.rates[-1] == pytest.approx(1.0, abs=0.15)


def test_taylor_test_drops_round_off_steps():
    theta = np.array([0.5, 0.7, -0.2])
    steps = [1e-2, 5e-3, 2.5e-3, 1e-9, 5e-10]
    report = taylor_test(smooth, theta, smooth_gradient(theta), steps=steps, rng=0)
    assert report.passed
    assert report.usable.tolist() == [True, True, False, False]
    assert report.remainders[-1] <= report.noise_floor


def quartic(theta: np.ndarray) -> float:
    """Along θ₀ the quartic term dominates the remainder at large steps (rate → 4)."""
    return float(theta[0] + theta @ theta + 1e3 * theta[0] ** 4)


def quartic_gradient(theta: np.ndarray) -> np.ndarray:
    return np.array([1 + 2 * theta[0] + 4e3 * theta[0] ** 3, 2 * theta[1]])


def test_taylor_test_drops_pre_asymptotic_steps_only_at_the_start():
    theta, direction, steps = np.array([0.1, 0.2]), np.array([1.0, 0.0]), 0.5 ** np.arange(10)
    report = taylor_test(quartic, theta, quartic_gradient(theta), steps=steps,
                         direction=direction)
    assert report.passed and "pre-asymptotic" in report.note
    assert report.rates[0] > 3 and not report.usable[0] and report.usable[-3:].all()
    wrong = taylor_test(quartic, theta, 1.01 * quartic_gradient(theta), steps=steps,
                        direction=direction)
    assert not wrong.passed and wrong.usable.all()


def test_taylor_test_on_a_linear_function_passes_only_with_the_right_gradient():
    c = np.array([1.0, -2.0, 3.0])
    assert taylor_test(lambda th: float(c @ th), np.ones(3), c, rng=0).passed
    assert not taylor_test(lambda th: float(c @ th), np.ones(3), 1.01 * c, rng=0).passed


def test_taylor_test_is_inconclusive_on_a_constant_function():
    report = taylor_test(lambda th: 1.0, np.ones(2), np.zeros(2), rng=0)
    # the zero gradient predicts the constant: not a failure, but not a confirmation either
    assert report.passed and report.inconclusive and "inconclusive" in report.note


def test_taylor_test_validates_its_arguments():
    with pytest.raises(ValueError, match="steps"):
        taylor_test(smooth, np.ones(2), np.ones(2), steps=[1e-2, 2e-2])
    with pytest.raises(ValueError, match="gradient"):
        taylor_test(smooth, np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        taylor_test(lambda th: np.nan, np.ones(2), np.ones(2))


def test_taylor_test_solver(affine):
    solver = ka.AdjointSolver(affine.problem(), method="gmres", preconditioner="ilu",
                              rtol=1e-12)
    report = taylor_test_solver(solver, affine.theta, rng=0)
    assert report.passed, report.summary()
    broken = ka.AdjointSolver(affine.problem(vjp=one_entry_off(affine.vjp)), rtol=1e-12,
                              preconditioner="ilu", check_gradient=False)
    assert not taylor_test_solver(broken, affine.theta, rng=0).passed
    # with its default check, the solver itself refuses the broken VJP
    with pytest.raises(ka.CallbackError, match="difference quotient"):
        ka.AdjointSolver(affine.problem(vjp=one_entry_off(affine.vjp)),
                         preconditioner="ilu").gradient(affine.theta)


def test_taylor_test_solver_noise_floor_follows_the_solver_tolerance(affine):
    loose = ka.AdjointSolver(affine.problem(), preconditioner="ilu", rtol=1e-6)
    tight = ka.AdjointSolver(affine.problem(), preconditioner="ilu", rtol=1e-12)
    assert (taylor_test_solver(loose, affine.theta, rng=0).noise_floor
            > 1e5 * taylor_test_solver(tight, affine.theta, rng=0).noise_floor)


# -- check_problem -------------------------------------------------------------------------
EXPECTED_CHECKS = ["operator.rmatvec", "operator.jvp", "operator.vjp", "rhs.jvp", "rhs.vjp",
                   "objective.grad_x", "objective.grad_theta",
                   "preconditioner.apply_transpose", "gradient.taylor"]


def test_check_problem_passes_on_a_correct_problem(affine, capsys):
    report = check_problem(affine.problem(custom_objective()), affine.theta,
                           preconditioner="ilu", rng=0)
    assert isinstance(report, VerificationReport)
    assert report.passed, report.summary()
    assert list(report.names) == EXPECTED_CHECKS
    assert report["operator.vjp"].report.reference == "operator.jvp"
    assert report.failures == ()
    assert all(name in report.summary() for name in EXPECTED_CHECKS)
    assert capsys.readouterr() == ("", "")


def test_check_problem_uses_the_solver_preconditioner(affine):
    solver = ka.AdjointSolver(affine.problem(), preconditioner="jacobi")
    report = check_problem(affine.problem(), affine.theta, solver=solver, rng=0)
    assert report.passed and "preconditioner.apply_transpose" in report.names
    assert solver.setups == 0  # the user's solver is left alone
    plain = check_problem(affine.problem(), affine.theta, rng=0, taylor=False)
    assert plain.passed
    assert "preconditioner.apply_transpose" not in plain.names
    assert "gradient.taylor" not in plain.names


BROKEN = [
    pytest.param({"rmatvec": "matvec"}, "operator.rmatvec", id="rmatvec-is-matvec"),
    pytest.param({"vjp": wrong_sign}, "operator.vjp", id="vjp-sign"),
    pytest.param({"vjp": one_entry_off}, "operator.vjp", id="vjp-one-entry"),
    pytest.param({"jvp": half}, "operator.jvp", id="jvp-missing-factor"),
    pytest.param({"b_vjp": half}, "rhs.vjp", id="rhs-vjp-missing-factor"),
    pytest.param({"b_jvp": wrong_sign}, "rhs.jvp", id="rhs-jvp-sign"),
]


@pytest.mark.parametrize(("breaks", "culprit"), BROKEN)
def test_check_problem_names_the_broken_callback(affine, breaks, culprit):
    override = {}
    for key, how in breaks.items():
        good = getattr(affine, key)
        override[key] = getattr(affine, how) if isinstance(how, str) else how(good)
    report = check_problem(affine.problem(**override), affine.theta, rng=0, taylor=False)
    assert report.failures == (culprit,), report.summary()


@pytest.mark.parametrize(("objective", "culprit"), [
    pytest.param(lambda: custom_objective(factor=0.99), "objective.grad_x", id="grad_x"),
    pytest.param(lambda: custom_objective(grad_theta=False), "objective.grad_theta",
                 id="missing-grad_theta"),
])
def test_check_problem_names_a_broken_objective(affine, objective, culprit):
    report = check_problem(affine.problem(objective()), affine.theta, rng=0)
    assert report.failures == (culprit, "gradient.taylor"), report.summary()


def test_check_problem_names_a_broken_preconditioner(affine):
    M = ApplyOnly(affine.A(affine.theta), transpose_is_apply=True)
    report = check_problem(affine.problem(), affine.theta, preconditioner=M, rng=0)
    assert "preconditioner.apply_transpose" in report.failures
    assert report["gradient.taylor"].passed  # a wrong Mᵀ slows the adjoint, not its answer


def test_check_problem_names_a_callback_returning_the_wrong_shape(affine):
    problem = affine.problem(vjp=lambda th, x, lam: np.zeros(P + 1))
    report = check_problem(problem, affine.theta, rng=0, taylor=False)
    assert report.failures == ("operator.vjp",)
    assert "expected shape" in report["operator.vjp"].detail


def test_check_problem_names_the_callback_that_raised_during_another_check(affine):
    def matvec(th, x):
        if abs(th[0] - affine.theta[0]) > 0:
            return np.full(x.size, np.nan)  # NaN away from θ only
        return affine.matvec(th, x)

    report = check_problem(affine.problem(matvec=matvec, jvp=None), affine.theta, rng=0,
                           taylor=False)
    assert "operator.matvec" in report.failures
    assert "while checking operator.vjp" in report["operator.matvec"].detail


def test_check_problem_reports_an_unconverged_taylor_solve(affine):
    scale = np.logspace(0, 14, N)  # rows scaled over 14 decades: GMRES cannot reach 1e-12

    problem = affine.problem(matvec=lambda th, x: scale * affine.matvec(th, x),
                             rmatvec=lambda th, y: affine.rmatvec(th, scale * y),
                             vjp=lambda th, x, lam: affine.vjp(th, x, scale * lam), jvp=None)
    report = check_problem(problem, affine.theta, rng=0)
    assert report.failures == ("gradient.taylor",), report.summary()
    assert "primal solve: DIVERGED_MAXITER" in report["gradient.taylor"].detail


def test_check_problem_rejects_a_bad_theta(affine):
    with pytest.raises(ka.InputError) as info:
        check_problem(affine.problem(), np.full(P, np.nan))
    assert info.value.argument == "theta"


# -- reports -------------------------------------------------------------------------------
def test_reports_are_frozen_with_read_only_arrays(affine):
    report = dot_test(lambda u: u, lambda v: v, (4, 4), rng=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.passed = False
    with pytest.raises(ValueError):
        report.errors[0] = 1.0
    taylor = taylor_test(smooth, np.ones(3), smooth_gradient(np.ones(3)), rng=0)
    with pytest.raises(ValueError):
        taylor.rates[0] = 2.0
    full = check_problem(affine.problem(), affine.theta, rng=0, taylor=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.checks = ()
    assert isinstance(full.checks, tuple) and all(isinstance(c, CheckResult) for c in full)


def test_verification_report_lookup_and_summary():
    report = VerificationReport((CheckResult("a", True, 1e-17, 1e-12),
                                 CheckResult("b", False, 0.5, 1e-8, "against x"),
                                 CheckResult("b", False, 0.4, 1e-8),
                                 CheckResult("c", True, np.nan, np.nan, skipped=True)))
    assert report.failures == ("b",) and not report.passed and len(report) == 4
    assert report["b"].error == 0.5
    with pytest.raises(KeyError, match="a, b, b, c"):
        report["missing"]
    text = report.summary()
    assert text.splitlines()[0].startswith("Verification FAILED: 1 passed, 2 failed, 1 skipped")
    assert "failing: b" in text


def test_verification_tools_do_not_modify_their_inputs(affine):
    theta = affine.theta.copy()
    x, lam = np.ones(N), np.linspace(0, 1, N)
    copies = [a.copy() for a in (theta, x, lam)]
    problem = affine.problem()
    operator_vjp_test(problem, theta, x=x, lam=lam, rng=0)
    rhs_vjp_test(problem, theta, lam=lam, rng=0)
    objective_gradient_test(problem, theta, x=x, rng=0)
    gradient = smooth_gradient(np.ones(3))
    g_copy = gradient.copy()
    taylor_test(smooth, np.ones(3), gradient, rng=0)
    check_problem(problem, theta, rng=0)
    for original, copy in zip((theta, x, lam, gradient), (*copies, g_copy), strict=True):
        np.testing.assert_array_equal(original, copy)


def test_check_problem_without_parameters_skips_the_parameter_checks():
    A = sp.diags([-1.0, 3.0, -1.5], [-1, 0, 1], shape=(20, 20), format="csr")
    problem = ka.AdjointProblem(A, np.ones(20), ka.LinearFunctional(np.ones(20)), n_params=0)
    report = check_problem(problem, np.zeros(0), rng=0)
    assert report.passed, report.summary()
    skipped = {c.name for c in report if c.skipped}
    assert {"operator.vjp", "rhs.vjp", "objective.grad_theta", "gradient.taylor"} <= skipped
    assert not report["operator.rmatvec"].skipped


def test_check_problem_falls_back_to_a_looser_tolerance_the_solves_can_reach():
    """GMRES(1) on a diagonal operator of condition ~22 reaches 1e-10 but not 1e-12 within
    the default 250 iterations: the Taylor test is run at 1e-10, and says so."""
    n = 25
    d = np.linspace(0.5, 22.0, n)
    rng = np.random.default_rng(0)
    op = ka.ParametricOperator(lambda th, x: (d + 0.5 * th) * x, n=n, structure="spd",
                               vjp=lambda th, x, lam: 0.5 * lam * x,
                               jvp=lambda th, x, dth: 0.5 * dth * x)
    problem = ka.AdjointProblem(op, rng.standard_normal(n),
                                ka.LinearFunctional(rng.standard_normal(n)), n_params=n)
    solver = ka.AdjointSolver(problem, method="gmres", restart=1, preconditioner=None)
    report = check_problem(problem, np.ones(n), solver=solver, rng=0)
    taylor = report["gradient.taylor"]
    assert report.passed, report.summary()
    assert "solves at rtol 1e-12 failed, used rtol 1e-10" in taylor.detail
    assert taylor.report.usable.sum() >= 2


def test_taylor_test_accepts_fewer_rates_only_when_noise_ends_them():
    theta, direction = np.array([0.1, 0.2]), np.array([1.0, 0.0])
    gradient = quartic_gradient(theta)
    cut_by_noise = taylor_test(quartic, theta, gradient, direction=direction,
                               steps=[4e-3, 2e-3, 1e-9, 5e-10])
    assert cut_by_noise.passed and cut_by_noise.usable.sum() == 1
    assert "noise floor" in cut_by_noise.note
    too_large = taylor_test(quartic, theta, gradient, direction=direction,
                            steps=0.5 ** np.arange(8))
    assert too_large.usable.sum() == 1 and not too_large.passed
    assert "inconclusive" in too_large.note


def test_check_problem_calls_a_locally_constant_objective_inconclusive_not_failed():
    """J that does not change along dθ (here J ≡ 0): nothing to confirm, nothing wrong."""
    n = 12
    T = sp.diags([-1.0, 3.0, -1.0], [-1, 0, 1], (n, n)).tocsr()
    op = ka.ParametricOperator(lambda t, x: T @ x + t * x, vjp=lambda t, x, l: l * x,
                               jvp=lambda t, x, d: d * x, n=n, structure="spd")
    problem = ka.AdjointProblem(op, np.ones(n), ka.LinearFunctional(np.zeros(n)), n_params=n)
    report = check_problem(problem, np.ones(n), rng=0)
    assert report.passed, report.summary()
    assert report["gradient.taylor"].status == "inconclusive"
    assert "1 inconclusive" in report.summary()
    # a gradient that predicts a change J does not make still fails
    wrong = taylor_test(lambda th: 0.0, np.ones(n), np.ones(n), rng=0)
    assert not wrong.passed and not wrong.inconclusive

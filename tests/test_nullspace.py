"""Singular systems with a declared nullspace: dense pseudo-inverse references, Taylor tests,
the projected Krylov iterations, AMG with the nullspace as its near-nullspace, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from krylov_adjoint import (
    AdjointProblem,
    AdjointSolver,
    CallbackError,
    InputError,
    LeastSquaresMisfit,
    LinearFunctional,
    ParametricOperator,
)
from krylov_adjoint.gallery import elasticity_2d, neumann_diffusion_2d
from krylov_adjoint.precond import AMGPreconditioner, ProjectedPreconditioner
from krylov_adjoint.problem import Nullspace
from krylov_adjoint.verify import preconditioner_dot_test, taylor_test, taylor_test_solver


def pinv_objective(problem, theta):
    """J(A(θ)⁺ b(θ), θ) by a dense pseudo-inverse: the reference of every test here."""
    A = problem.assemble(theta).toarray()
    x = np.linalg.pinv(A) @ problem.b(theta)
    return problem.objective_value(x, theta), x


def central_difference(problem, theta, direction, h=1e-5):
    plus = pinv_objective(problem, theta + h * direction)[0]
    minus = pinv_objective(problem, theta - h * direction)[0]
    return (plus - minus) / (2 * h)


# -- the gallery's singular problems --------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: neumann_diffusion_2d(9, 7),
                                  lambda: elasticity_2d(6, 5)], ids=["neumann", "elasticity"])
def test_gradient_matches_the_pseudo_inverse(make):
    model = make()
    problem, theta = model.problem, model.theta
    solver = AdjointSolver(problem, preconditioner="amg", method="cg", rtol=1e-12)
    result = solver.gradient(theta)
    value, x = pinv_objective(problem, theta)
    assert np.allclose(result.x, x, rtol=0, atol=1e-9 * np.abs(x).max())
    Z = problem.operator.nullspace.columns(theta, model.n)[0]
    assert np.abs(Z.T @ result.x).max() < 1e-10 * np.linalg.norm(result.x)
    assert result.objective == pytest.approx(value, rel=1e-9)
    # the gradient by the pseudo-inverse's derivative at constant nullspace: −A⁺(∂A/∂θ)x
    A_pinv = np.linalg.pinv(problem.assemble(theta).toarray())
    g = problem.objective_grad_x(x, theta)
    reference = np.array([-(g @ A_pinv) @ (D @ x) for D in model.derivative_matrices(theta)])
    assert np.allclose(result.gradient, reference, rtol=1e-7, atol=1e-9 * np.abs(reference).max())
    direction = np.random.default_rng(3).standard_normal(model.n_params)
    assert result.gradient @ direction == pytest.approx(
        central_difference(problem, theta, direction), rel=1e-6)
    assert taylor_test_solver(solver, theta, rng=1).passed


def test_pure_neumann_cg_amg_converges_with_the_nullspace_as_near_nullspace():
    model = neumann_diffusion_2d(48)
    solver = AdjointSolver(model.problem, preconditioner="amg", method="cg", rtol=1e-10)
    result = solver.gradient(model.theta)
    assert result.primal.converged and result.adjoint_solve.converged
    assert result.primal.iterations < 40 and result.adjoint_solve.iterations < 40
    B = solver.backend.M.hierarchy.levels[0].B
    assert np.allclose(B / B[0], 1.0)  # the constants went to pyamg as B
    assert abs(result.x.mean()) < 1e-12 * np.abs(result.x).max()


def test_elasticity_rigid_modes_go_to_amg():
    model = elasticity_2d(16)
    solver = AdjointSolver(model.problem, preconditioner="amg", method="cg", rtol=1e-10)
    result = solver.gradient(model.theta)
    assert result.primal.converged and result.primal.iterations < 60
    assert solver.backend.M.hierarchy.levels[0].B.shape[1] == 3


def test_user_near_nullspace_option_is_kept():
    model = neumann_diffusion_2d(12)
    B = np.ones((model.n, 1)) * 2.0
    solver = AdjointSolver(model.problem, preconditioner="amg",
                           preconditioner_options={"near_nullspace": B}, rtol=1e-10)
    solver.gradient(model.theta)
    assert np.allclose(solver.backend.M.hierarchy.levels[0].B, 2.0)


def test_directional_derivative_and_jacobian_with_a_constant_nullspace():
    model = neumann_diffusion_2d(8)
    solver = AdjointSolver(model.problem, preconditioner="amg", method="cg", rtol=1e-12)
    gradient = solver.gradient(model.theta).gradient
    direction = np.random.default_rng(4).standard_normal(model.n_params)
    tangent = solver.directional_derivative(model.theta, direction)
    assert tangent.derivative == pytest.approx(gradient @ direction, rel=1e-8)
    outputs = [model.problem.objective, LinearFunctional(np.linspace(0.0, 1.0, model.n))]
    by_adjoints = solver.jacobian(model.theta, outputs, mode="adjoint").matrix
    by_tangents = solver.jacobian(model.theta, outputs, mode="tangent").matrix
    assert np.allclose(by_adjoints, by_tangents, rtol=1e-8, atol=1e-10)
    assert np.allclose(by_adjoints[0], gradient, rtol=1e-8)


# -- right-hand sides -------------------------------------------------------------------------
def neumann_1d(n=12, b=None, rhs="check", weights=None):
    """A(θ) = Σ_k e^{θ_k} (e_k − e_{k+1})(e_k − e_{k+1})ᵀ: a 1-D Neumann chain, P = n − 1."""
    D = sp.diags([np.ones(n - 1), -np.ones(n - 1)], [0, 1], shape=(n - 1, n)).tocsr()

    def assemble(theta):
        return (D.T @ sp.diags(np.exp(theta)) @ D).tocsr()

    op = ParametricOperator(lambda th, x: D.T @ (np.exp(th) * (D @ x)), n=n, structure="spd",
                            vjp=lambda th, x, lam: np.exp(th) * (D @ x) * (D @ lam),
                            jvp=lambda th, x, dth: D.T @ (np.exp(th) * dth * (D @ x)),
                            assemble=assemble, nullspace=Nullspace(np.ones(n), rhs=rhs))
    if b is None:
        b = np.sin(np.arange(n))
        b -= b.mean()
    if weights is None:
        weights = np.linspace(-1.0, 2.0, n) ** 2
    objective = LeastSquaresMisfit(sp.identity(n, format="csr"), weights)
    return AdjointProblem(op, b, objective, n_params=n - 1)


def test_inconsistent_rhs_is_refused_with_its_measure():
    b = np.arange(12.0)  # does not sum to zero
    problem = neumann_1d(b=b)
    solver = AdjointSolver(problem, preconditioner="none", method="cg")
    with pytest.raises(CallbackError, match=r"rhs: is inconsistent .* 1\.\d\de\+00 of ‖b‖|"
                                             r"rhs: is inconsistent .* \d\.\d\de-0\d of ‖b‖"):
        solver.gradient(np.zeros(11))
    ratio = abs(b.sum()) / np.sqrt(12) / np.linalg.norm(b)
    with pytest.raises(CallbackError, match=f"{ratio:.2e}"):
        solver.gradient(np.zeros(11))


def test_projected_rhs_gives_the_least_squares_solution_and_its_gradient():
    problem = neumann_1d(b=np.arange(12.0) ** 1.5, rhs="project")
    theta = np.random.default_rng(0).standard_normal(11) * 0.3
    solver = AdjointSolver(problem, preconditioner="none", method="cg", rtol=1e-13)
    result = solver.gradient(theta)
    A = problem.assemble(theta).toarray()
    x = np.linalg.lstsq(A, problem.b(theta), rcond=None)[0]
    assert np.allclose(result.x, x, atol=1e-10 * np.abs(x).max())
    for seed in range(3):
        direction = np.random.default_rng(seed).standard_normal(11)
        assert result.gradient @ direction == pytest.approx(
            central_difference(problem, theta, direction), rel=1e-6)


def test_declared_vectors_that_are_not_null_are_refused():
    model = neumann_diffusion_2d(6)
    op = model.problem.operator
    bad = ParametricOperator(op.matvec, n=model.n, vjp=op.vjp, structure="spd",
                             assemble=op.assemble,
                             nullspace=np.linspace(1.0, 2.0, model.n))
    problem = AdjointProblem(bad, model.problem.rhs, model.problem.objective,
                             n_params=model.n_params)
    with pytest.raises(CallbackError, match=r"operator.nullspace: vector 0 is not in the "
                                            r"nullspace of A\(θ\)"):
        AdjointSolver(problem).gradient(model.theta)


def test_a_nonsymmetric_operator_needs_the_nullspace_of_its_transpose():
    A, W = nonsymmetric_singular(8)
    op = ParametricOperator.constant(A, nullspace=np.ones(8))
    problem = AdjointProblem(op, A @ np.arange(8.0), LinearFunctional(np.ones(8)), n_params=1)
    with pytest.raises(CallbackError, match=r"operator.nullspace \(as the transpose's\)"):
        AdjointSolver(problem, preconditioner="none").gradient(np.zeros(1))


def nonsymmetric_singular(n, seed=0):
    """A = (I − wwᵀ) C (I − zzᵀ) with z = 1/√n: nullspace 1, left nullspace w."""
    rng = np.random.default_rng(seed)
    z = np.ones(n) / np.sqrt(n)
    w = rng.standard_normal(n)
    w /= np.linalg.norm(w)
    C = np.eye(n) * 4 + rng.standard_normal((n, n))
    return (np.eye(n) - np.outer(w, w)) @ C @ (np.eye(n) - np.outer(z, z)), w


@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_nonsymmetric_constant_nullspaces(method):
    n = 10
    A0, w = nonsymmetric_singular(n)
    rng = np.random.default_rng(1)
    P_w, P_z = np.eye(n) - np.outer(w, w), np.eye(n) - np.ones((n, n)) / n
    derivatives = [P_w @ rng.standard_normal((n, n)) @ P_z for _ in range(3)]

    def matrix(theta):
        return A0 + sum(t * D for t, D in zip(theta, derivatives, strict=True))

    op = ParametricOperator(lambda th, x: matrix(th) @ x, n=n,
                            rmatvec=lambda th, y: matrix(th).T @ y,
                            vjp=lambda th, x, lam: np.array([lam @ D @ x for D in derivatives]),
                            assemble=lambda th: sp.csr_matrix(matrix(th)),
                            nullspace=Nullspace(np.ones(n), transpose=w))
    b = P_w @ rng.standard_normal(n)
    problem = AdjointProblem(op, b, LeastSquaresMisfit(sp.identity(n, format="csr"),
                                                       rng.standard_normal(n)), n_params=3)
    theta = np.array([0.1, -0.2, 0.05])
    solver = AdjointSolver(problem, preconditioner="ilu", method=method, rtol=1e-12)
    result = solver.gradient(theta)
    assert np.allclose(result.x, np.linalg.pinv(matrix(theta)) @ b, atol=1e-10)
    assert abs(result.adjoint @ w) < 1e-10 * np.linalg.norm(result.adjoint)
    direction = rng.standard_normal(3)
    assert result.gradient @ direction == pytest.approx(
        central_difference(problem, theta, direction), rel=1e-6)


# -- a nullspace that depends on θ --------------------------------------------------------------
def rotating_nullspace_problem(rhs):
    """A(θ) = (I − w wᵀ) C(θ) (I − z zᵀ) with unit z(θ), w(θ) turning with θ."""
    n = 7
    rng = np.random.default_rng(5)
    C0 = np.eye(n) * 3 + rng.standard_normal((n, n))
    C1 = rng.standard_normal((n, n))
    z0, z1, w0, w1 = (rng.standard_normal(n) for _ in range(4))

    def unit(v):
        return v / np.linalg.norm(v)

    def parts(theta):
        z = unit(z0 + np.sin(theta[0]) * z1)
        w = unit(w0 + np.cos(theta[1]) * w1)
        C = C0 + theta[0] * theta[1] * C1
        return z, w, (np.eye(n) - np.outer(w, w)) @ C @ (np.eye(n) - np.outer(z, z))

    def derivative(theta, k, h=1e-6):
        e = np.zeros(2)
        e[k] = h
        return (parts(theta + e)[2] - parts(theta - e)[2]) / (2 * h)

    op = ParametricOperator(lambda th, x: parts(th)[2] @ x, n=n,
                            rmatvec=lambda th, y: parts(th)[2].T @ y,
                            vjp=lambda th, x, lam: np.array(
                                [lam @ derivative(th, k) @ x for k in range(2)]),
                            assemble=lambda th: sp.csr_matrix(parts(th)[2]),
                            nullspace=Nullspace(lambda th: parts(th)[0],
                                                transpose=lambda th: parts(th)[1], rhs=rhs))
    v = rng.standard_normal(n)
    if rhs == "check":
        from krylov_adjoint import RightHandSide

        b = RightHandSide(lambda th: parts(th)[2] @ v,
                          vjp=lambda th, lam: np.array(
                              [lam @ derivative(th, k) @ v for k in range(2)]))
    else:
        b = v
    objective = LeastSquaresMisfit(sp.identity(n, format="csr"), rng.standard_normal(n))
    return AdjointProblem(op, b, objective, n_params=2)


@pytest.mark.parametrize("rhs", ["check", "project"])
def test_theta_dependent_nullspace_gradient(rhs):
    problem = rotating_nullspace_problem(rhs)
    theta = np.array([0.4, -0.7])
    solver = AdjointSolver(problem, preconditioner="none", method="gmres", rtol=1e-13)
    result = solver.gradient(theta)
    assert np.allclose(result.x, pinv_objective(problem, theta)[1], atol=1e-9)
    for seed in range(2):
        direction = np.random.default_rng(seed).standard_normal(2)
        assert result.gradient @ direction == pytest.approx(
            central_difference(problem, theta, direction, h=1e-4), rel=1e-5)
    report = taylor_test(lambda t: pinv_objective(problem, t)[0], theta, result.gradient, rng=2)
    assert report.passed, report.summary()


def test_theta_dependent_nullspace_refuses_forward_mode():
    problem = rotating_nullspace_problem("check")
    solver = AdjointSolver(problem, preconditioner="none", method="gmres")
    with pytest.raises(InputError, match="operator.nullspace: depends on θ"):
        solver.directional_derivative(np.array([0.4, -0.7]), np.ones(2))


# -- the pieces ----------------------------------------------------------------------------
def test_projected_preconditioner_transpose_is_exact():
    model = elasticity_2d(5)
    A = model.problem.assemble(model.theta)
    basis = model.problem.operator.nullspace.at(model.theta, model.n)
    W = np.linalg.qr(np.random.default_rng(0).standard_normal((model.n, 3)))[0]
    for inner in (AMGPreconditioner(A, near_nullspace=basis.Z), None):
        report = preconditioner_dot_test(ProjectedPreconditioner(inner, basis.Z, W), rng=0)
        assert report.passed, report.summary()


@pytest.mark.parametrize("basis, match", [
    (np.ones((5, 5)), "declares 5 vectors for N = 5"),
    (np.ones((5, 2)), "linearly dependent"),
    (np.ones(5) * 1j, "expected real vectors"),
    (np.array([1.0, np.nan, 1.0, 1.0, 1.0]), "non-finite"),
])
def test_bad_declarations(basis, match):
    with pytest.raises((InputError, CallbackError), match=match):
        Nullspace(basis).at(np.zeros(1), 5)


def test_bad_policy_and_wrong_length():
    with pytest.raises(InputError, match="rhs: expected one of"):
        Nullspace(np.ones(3), rhs="ignore")
    with pytest.raises(InputError, match="has 3 rows, but A is 4 × 4"):
        Nullspace(np.ones(3)).at(np.zeros(1), 4)
    with pytest.raises(CallbackError, match="spans 2 vector"):
        Nullspace(np.ones(4), transpose=np.eye(4)[:, :2]).at(np.zeros(1), 4)

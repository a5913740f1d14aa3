"""Complex systems A(θ) x = b(θ) with real θ: dense references, Taylor tests, Hermitian dot
tests, random complex systems, the Helmholtz gallery problem and the bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krylov_adjoint import (
    AdjointProblem,
    AdjointSolver,
    CallbackError,
    InputError,
    Objective,
    ParametricOperator,
    RightHandSide,
)
from krylov_adjoint.gallery import helmholtz_2d
from krylov_adjoint.precond import (
    AMGPreconditioner,
    ILUPreconditioner,
    JacobiPreconditioner,
    LUPreconditioner,
)
from krylov_adjoint.verify import (
    dot_test,
    operator_dot_test,
    preconditioner_dot_test,
    taylor_test,
    taylor_test_solver,
)


def misfit(data, weights=None):
    """J = ½ Σ w |x − d|², dJ_dx = w (x − d): the convention ∂J/∂Re x + i ∂J/∂Im x."""
    w = np.ones(data.size) if weights is None else weights

    return Objective(J=lambda th, x: 0.5 * float(np.sum(w * np.abs(x - data) ** 2)),
                     dJ_dx=lambda th, x: w * (x - data))


def random_system(n, p, seed, structure="general"):
    """A(θ) = A0 + Σ θ_k A_k and b(θ) = b0 + B θ, complex, with a misfit objective."""
    rng = np.random.default_rng(seed)

    def complex_matrix(scale):
        return scale * (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))

    A0 = complex_matrix(1.0) + 3 * np.sqrt(n) * np.eye(n)
    terms = [complex_matrix(0.3) for _ in range(p)]
    if structure == "symmetric":
        A0, terms = A0 + A0.T, [T + T.T for T in terms]
    elif structure == "spd":
        A0, terms = A0 @ A0.conj().T + n * np.eye(n), [T + T.conj().T for T in terms]
    b0 = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    B = rng.standard_normal((n, p)) + 1j * rng.standard_normal((n, p))

    def matrix(theta):
        return A0 + sum(t * T for t, T in zip(theta, terms, strict=True))

    op = ParametricOperator(
        lambda th, x: matrix(th) @ x, n=n, structure=structure, dtype=complex,
        rmatvec=None if structure != "general" else (lambda th, y: matrix(th).conj().T @ y),
        vjp=lambda th, x, lam: np.array([np.vdot(lam, T @ x) for T in terms]),
        jvp=lambda th, x, dth: sum(d * (T @ x) for d, T in zip(dth, terms, strict=True)),
        assemble=lambda th: sp.csr_matrix(matrix(th)))
    rhs = RightHandSide(lambda th: b0 + B @ th, vjp=lambda th, lam: B.T @ np.conj(lam),
                        jvp=lambda th, dth: B @ dth)
    data = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    problem = AdjointProblem(op, rhs, misfit(data), n_params=p)
    theta = 0.1 * rng.standard_normal(p)
    return problem, theta, matrix, (b0, B, data)


def dense_objective(problem, theta):
    x = np.linalg.solve(problem.assemble(theta).toarray(), problem.b(theta))
    return problem.objective_value(x, theta)


def dense_gradient(matrix, parts, theta, h=1e-6):
    """dJ/dθ by central differences of the dense complex solve (independent of the adjoint)."""
    b0, B, data = parts

    def J(t):
        x = np.linalg.solve(matrix(t), b0 + B @ t)
        return 0.5 * float(np.sum(np.abs(x - data) ** 2))

    return np.array([(J(theta + h * e) - J(theta - h * e)) / (2 * h)
                     for e in np.eye(theta.size)])


@pytest.mark.parametrize("method, preconditioner, structure", [
    ("gmres", "none", "general"), ("gmres", "ilu", "general"), ("bicgstab", "lu", "general"),
    ("gmres", "jacobi", "symmetric"), ("cg", "none", "spd"), ("bicgstab", "ilu", "spd")])
def test_gradient_matches_the_dense_reference(method, preconditioner, structure):
    problem, theta, matrix, parts = random_system(12, 4, 0, structure)
    solver = AdjointSolver(problem, method=method, preconditioner=preconditioner, rtol=1e-13)
    result = solver.gradient(theta)
    assert result.x.dtype == np.complex128 and result.adjoint.dtype == np.complex128
    assert result.gradient.dtype == np.float64
    assert np.allclose(result.x, np.linalg.solve(matrix(theta), parts[0] + parts[1] @ theta),
                       atol=1e-11)
    assert np.allclose(result.gradient, dense_gradient(matrix, parts, theta), rtol=1e-6,
                       atol=1e-8)
    # the adjoint solves Aᴴ λ = ∂J/∂x̄
    g = problem.objective_grad_x(result.x, theta)
    assert np.allclose(matrix(theta).conj().T @ result.adjoint, g, atol=1e-10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 15), p=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       structure=st.sampled_from(["general", "symmetric", "spd"]))
def test_random_complex_systems(n, p, seed, structure):
    problem, theta, matrix, parts = random_system(n, p, seed, structure)
    solver = AdjointSolver(problem, method="gmres", preconditioner="lu", rtol=1e-13)
    result = solver.gradient(theta)
    reference = dense_gradient(matrix, parts, theta)
    assert np.allclose(result.gradient, reference, rtol=1e-5,
                       atol=1e-7 * max(1.0, np.abs(reference).max()))
    assert operator_dot_test(problem, theta, rng=seed).error <= 1e-12


def test_directional_derivative_and_jacobian_modes_agree():
    problem, theta, _, _ = random_system(10, 3, 1)
    solver = AdjointSolver(problem, preconditioner="lu", rtol=1e-13)
    gradient = solver.gradient(theta).gradient
    direction = np.array([0.3, -1.0, 0.5])
    assert solver.directional_derivative(theta, direction).derivative == pytest.approx(
        gradient @ direction, rel=1e-9)
    rng = np.random.default_rng(2)
    second = misfit(rng.standard_normal(10) + 1j * rng.standard_normal(10))
    outputs = [problem.objective, second]
    by_adjoints = solver.jacobian(theta, outputs, mode="adjoint").matrix
    by_tangents = solver.jacobian(theta, outputs, mode="tangent").matrix
    assert np.allclose(by_adjoints, by_tangents, rtol=1e-8, atol=1e-12)


def test_complex_dot_tests_are_hermitian():
    rng = np.random.default_rng(0)
    C = rng.standard_normal((7, 5)) + 1j * rng.standard_normal((7, 5))
    good = dot_test(lambda u: C @ u, lambda v: C.conj().T @ v, C.shape, rng=0, dtype=complex)
    assert good.passed and good.error <= 1e-14
    assert not dot_test(lambda u: C @ u, lambda v: C.T @ v, C.shape, rng=0,
                        dtype=complex).passed
    A = sp.csr_matrix(rng.standard_normal((30, 30)) + 1j * rng.standard_normal((30, 30))
                      + 10 * np.eye(30))
    for M in (JacobiPreconditioner(A), ILUPreconditioner(A), LUPreconditioner(A)):
        report = preconditioner_dot_test(M, rng=0)
        assert report.passed and report.error <= 1e-12, report.summary()


def test_a_transpose_without_conjugate_is_refused():
    problem, theta, matrix, _ = random_system(8, 2, 3)
    op = problem.operator
    wrong = ParametricOperator(op._matvec, n=8, rmatvec=lambda th, y: matrix(th).T @ y,
                               vjp=op._vjp, dtype=complex)
    bad = AdjointProblem(wrong, problem.rhs, problem.objective, n_params=2)
    assert not operator_dot_test(bad, theta, rng=0).passed
    with pytest.raises(CallbackError, match="operator.rmatvec: is not the transpose"):
        AdjointSolver(bad, preconditioner="none").gradient(theta)


def test_complex_symmetric_default_rmatvec_is_the_conjugate():
    problem, theta, matrix, _ = random_system(9, 2, 4, "symmetric")
    y = np.arange(9) * (1 - 2j)
    assert np.allclose(problem.rmatvec(theta, y), matrix(theta).conj().T @ y)
    assert problem.operator.symmetric_rmatvec


# -- the gallery's Helmholtz problem ---------------------------------------------------------
def test_helmholtz_gradient_taylor_and_reference():
    model = helmholtz_2d(10)
    problem = model.problem
    solver = AdjointSolver(problem, method="gmres", preconditioner="lu", rtol=1e-13)
    result = solver.gradient(model.theta)
    A = problem.assemble(model.theta).toarray()
    eigenvalues = np.linalg.eigvals(A).real
    assert eigenvalues.min() < 0 < eigenvalues.max()  # indefinite at this frequency
    rng = np.random.default_rng(5)
    for _ in range(2):
        direction = rng.standard_normal(model.n_params)
        h = 1e-6
        difference = (dense_objective(problem, model.theta + h * direction)
                      - dense_objective(problem, model.theta - h * direction)) / (2 * h)
        assert result.gradient @ direction == pytest.approx(difference, rel=1e-6)
    assert taylor_test_solver(solver, model.theta, rng=1).passed
    report = taylor_test(lambda t: dense_objective(problem, t), model.theta, result.gradient,
                         rng=2)
    assert report.passed, report.summary()
    assert operator_dot_test(problem, model.theta, rng=0).error <= 1e-12


def test_helmholtz_shifted_laplacian_preconditioner():
    exact = helmholtz_2d(16)
    shifted = helmholtz_2d(16, shifted_laplacian=0.5)
    plain = AdjointSolver(exact.problem, preconditioner="none", rtol=1e-10, restart=50,
                          maxiter=5000).gradient(exact.theta)
    result = AdjointSolver(shifted.problem, preconditioner="lu", rtol=1e-10,
                           restart=50).gradient(shifted.theta)
    assert result.primal.converged and result.adjoint_solve.converged
    assert result.primal.iterations < plain.primal.iterations / 3
    assert np.allclose(result.gradient, plain.gradient, rtol=1e-6,
                       atol=1e-8 * np.abs(plain.gradient).max())


# -- bad inputs --------------------------------------------------------------------------------
def test_complex_theta_is_refused():
    problem, theta, _, _ = random_system(6, 2, 0)
    solver = AdjointSolver(problem, preconditioner="lu")
    with pytest.raises(InputError, match="theta: got complex values .* the parameters θ are "
                                         "real"):
        solver.gradient(theta + 1j)


def test_hessian_actions_of_complex_systems_are_refused():
    problem, theta, _, _ = random_system(6, 2, 0)
    with pytest.raises(InputError, match="Hessian and Gauss–Newton actions of a complex"):
        AdjointSolver(problem, preconditioner="lu").gauss_newton_vector_product(theta, theta)


def test_complex_data_needs_the_declaration():
    A = sp.identity(4, format="csr") * (1 + 1j)
    with pytest.raises(InputError, match="A: got complex values .* declare a complex system"):
        ParametricOperator.constant(A)
    op = ParametricOperator.constant(A, dtype=complex, structure="symmetric")
    problem = AdjointProblem(op, np.ones(4) * 1j, misfit(np.zeros(4)), n_params=0)
    result = AdjointSolver(problem, preconditioner="jacobi").gradient(np.zeros(0))
    assert np.allclose(result.x, 1j / (1 + 1j))
    with pytest.raises(InputError, match="dtype: expected float64 or complex128"):
        ParametricOperator.constant(A, dtype=np.int64)


@pytest.mark.parametrize("cycle", ["V", "W", "F"])
def test_amg_on_a_complex_matrix_with_the_conjugate_transposed_cycle(cycle):
    model = helmholtz_2d(24, shifted_laplacian=0.5)
    M = AMGPreconditioner(model.problem.assemble(model.theta), cycle=cycle)
    assert M.dtype == np.complex128 and M.is_symmetric is None
    report = preconditioner_dot_test(M, rng=0)
    assert report.passed and report.error <= 1e-12, report.summary()
    solver = AdjointSolver(model.problem, preconditioner="amg", rtol=1e-10, restart=60,
                           preconditioner_options={"cycle": cycle})
    result = solver.gradient(model.theta)
    reference = AdjointSolver(model.problem, preconditioner="lu", rtol=1e-10,
                              restart=60).gradient(model.theta)
    assert result.primal.iterations <= 2 * reference.primal.iterations
    assert np.allclose(result.gradient, reference.gradient, rtol=1e-6,
                       atol=1e-8 * np.abs(reference.gradient).max())


def test_amg_of_a_real_matrix_refuses_complex_vectors():
    M = AMGPreconditioner(sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(50, 50)).tocsr())
    with pytest.raises(ValueError, match="complex vectors for a real matrix"):
        M.apply(np.ones(50) * 1j)


def test_petsc_refuses_a_complex_system_on_a_real_build():
    from krylov_adjoint.backends.petsc.backend import check_scalar_type

    check_scalar_type(np.float64, np.float64)
    check_scalar_type(np.complex128, np.complex128)
    with pytest.raises(InputError, match="PETSc.ScalarType is float64"):
        check_scalar_type(np.complex128, np.float64)


# -- COCG ------------------------------------------------------------------------------------------
def test_cocg_solves_complex_symmetric_systems():
    from krylov_adjoint.krylov import solve

    problem, theta, matrix, parts = random_system(20, 2, 7, "symmetric")
    A = matrix(theta)
    b = parts[0]
    result = solve(A, b, method="cocg", rtol=1e-12)
    assert result.converged and np.allclose(A @ result.x, b, atol=1e-10 * np.linalg.norm(b))
    solver = AdjointSolver(problem, method="cocg", preconditioner="jacobi", rtol=1e-13)
    gradient = solver.gradient(theta).gradient
    assert np.allclose(gradient, dense_gradient(matrix, parts, theta), rtol=1e-6, atol=1e-8)


def test_cocg_with_shifted_laplacian_amg_on_helmholtz():
    model = helmholtz_2d(24, shifted_laplacian=0.5)
    cocg = AdjointSolver(model.problem, method="cocg", preconditioner="amg",
                         rtol=1e-10).gradient(model.theta)
    gmres = AdjointSolver(model.problem, method="gmres", preconditioner="lu", rtol=1e-10,
                          restart=60).gradient(model.theta)
    assert cocg.primal.converged and cocg.adjoint_solve.converged
    assert np.allclose(cocg.gradient, gmres.gradient, rtol=1e-6,
                       atol=1e-7 * np.abs(gmres.gradient).max())


def test_cocg_needs_a_symmetric_declaration():
    problem, _, _, _ = random_system(6, 1, 0, "general")
    with pytest.raises(ValueError, match="method='cocg' needs a \\(complex\\) symmetric"):
        AdjointSolver(problem, method="cocg")


# -- the verification tools on a complex system ------------------------------------------------
def test_check_problem_passes_helmholtz_and_catches_a_missing_conjugate():
    from krylov_adjoint import verify

    model = helmholtz_2d(8)
    assert verify.check_problem(model.problem, model.theta, rng=0).passed
    op = model.problem.operator
    omega2 = 144.0  # the default ω = 12
    wrong = ParametricOperator(op._matvec, n=model.n, jvp=op._jvp, structure="symmetric",
                               vjp=lambda th, x, lam: -omega2 * np.exp(th) * lam * x,
                               assemble=op._assemble, dtype=complex)  # λᵀ, not λᴴ
    bad = AdjointProblem(wrong, model.problem.rhs, model.problem.objective,
                         n_params=model.n_params)
    report = verify.check_problem(bad, model.theta, rng=0)
    failed = {check.name for check in report.checks if not check.passed}
    assert "operator.vjp" in failed
    with pytest.raises(CallbackError, match="operator.vjp: disagrees with a difference"):
        AdjointSolver(bad, preconditioner="lu").gradient(model.theta)


def test_petsc_refuses_complex_theta_on_every_rank():
    from krylov_adjoint.backends.petsc import PetscAdjointSolver, gallery

    model = gallery.diffusion_2d(6)
    with PetscAdjointSolver(model.problem) as solver, \
            pytest.raises(InputError, match="theta: got complex values .* θ are real"):
        solver.gradient(model.theta + 1j)


def test_recycling_is_refused_for_a_complex_system():
    model = helmholtz_2d(8)
    with pytest.raises(ValueError, match="recycling is for real systems"):
        AdjointSolver(model.problem, method="gmres", recycle=4)

"""Hessian and Gauss–Newton actions against dense references.

The model has every kind of second-order term: A(θ) = A0 + diag(e^θ) + S(θ) with
S_{k,k+1} = θ_k² (nonsymmetric in θ), b(θ) = b0 + sin θ, and
J = ½‖x − d‖² + ½α‖θ‖² + γ θ·x (a cross term in x and θ).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint._transpose import transpose_mismatch

N = 12
ALPHA, GAMMA = 0.3, 0.2
RNG = np.random.default_rng(3)
A0 = np.diag(np.full(N, 4.0)) + 0.6 * RNG.standard_normal((N, N)) * (RNG.random((N, N)) < 0.3)
B0 = RNG.standard_normal(N)
D = RNG.standard_normal(N)
THETA = RNG.uniform(-0.5, 0.5, N)


def dense_matrix(theta: np.ndarray) -> np.ndarray:
    return A0 + np.diag(np.exp(theta)) + np.diag(theta[:-1] ** 2, 1)


def matrix_derivative(theta: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((N, N))
    out[k, k] = np.exp(theta[k])
    if k < N - 1:
        out[k, k + 1] = 2 * theta[k]
    return out


def shift(v: np.ndarray) -> np.ndarray:
    """v_{k+1} at k (0 at the last entry)."""
    return np.append(v[1:], 0.0)


def problem(*, second_order: bool = True) -> ka.AdjointProblem:
    def vjp(th, x, lam):
        return lam * np.exp(th) * x + 2 * th * lam * shift(x) * (np.arange(N) < N - 1)

    def jvp(th, x, d):
        return np.exp(th) * d * x + 2 * th * d * shift(x) * (np.arange(N) < N - 1)

    def jvp_transpose(th, y, d):
        upper = 2 * th * d * y * (np.arange(N) < N - 1)
        return np.exp(th) * d * y + np.concatenate([[0.0], upper[:-1]])

    def vjp_jvp(th, x, lam, d):
        return (lam * np.exp(th) * x + 2 * lam * shift(x) * (np.arange(N) < N - 1)) * d

    extra = dict(vjp_jvp=vjp_jvp, jvp_transpose=jvp_transpose) if second_order else {}
    op = ka.ParametricOperator(lambda th, x: dense_matrix(th) @ x,
                               rmatvec=lambda th, y: dense_matrix(th).T @ y, vjp=vjp, jvp=jvp,
                               n=N, assemble=lambda th: sp.csr_matrix(dense_matrix(th)), **extra)
    rhs_extra = dict(vjp_jvp=lambda th, lam, d: -lam * np.sin(th) * d) if second_order else {}
    rhs = ka.RightHandSide(lambda th: B0 + np.sin(th), vjp=lambda th, lam: lam * np.cos(th),
                           jvp=lambda th, d: np.cos(th) * d, **rhs_extra)
    objective = ka.Objective(
        J=lambda th, x: 0.5 * float((x - D) @ (x - D)) + 0.5 * ALPHA * float(th @ th)
        + GAMMA * float(th @ x),
        dJ_dx=lambda th, x: x - D + GAMMA * th, dJ_dtheta=lambda th, x: ALPHA * th + GAMMA * x,
        d2J_dx2=lambda th, x, v: v, d2J_dxdtheta=lambda th, x, d: GAMMA * d,
        d2J_dthetadx=lambda th, x, v: GAMMA * v, d2J_dtheta2=lambda th, x, d: ALPHA * d)
    return ka.AdjointProblem(op, rhs, objective, n_params=N)


def dense_gradient(theta: np.ndarray) -> np.ndarray:
    A = dense_matrix(theta)
    x = np.linalg.solve(A, B0 + np.sin(theta))
    lam = np.linalg.solve(A.T, x - D + GAMMA * theta)
    op_term = np.array([lam @ matrix_derivative(theta, k) @ x for k in range(N)])
    return ALPHA * theta + GAMMA * x - op_term + lam * np.cos(theta)


def dense_hessian(theta: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central differences of the dense gradient, column by column."""
    return np.column_stack([(dense_gradient(theta + h * e) - dense_gradient(theta - h * e))
                            / (2 * h) for e in np.eye(N)])


def dense_gauss_newton(theta: np.ndarray) -> np.ndarray:
    """J_θθ + J_θx F + Fᵀ J_xθ + Fᵀ J_xx F with F = dx/dθ."""
    A = dense_matrix(theta)
    x = np.linalg.solve(A, B0 + np.sin(theta))
    F = np.linalg.solve(A, np.diag(np.cos(theta))
                        - np.column_stack([matrix_derivative(theta, k) @ x for k in range(N)]))
    return ALPHA * np.eye(N) + GAMMA * (F + F.T) + F.T @ F


@pytest.mark.parametrize(("method", "preconditioner"),
                         [("gmres", "jacobi"), ("bicgstab", "none"), ("gmres", "ilu"),
                          ("gmres", "amg")])
def test_hessian_vector_products_equal_the_dense_hessian(method, preconditioner):
    solver = ka.AdjointSolver(problem(), method=method, preconditioner=preconditioner,
                              rtol=1e-12)
    H = dense_hessian(THETA)
    for k, v in enumerate(np.random.default_rng(0).standard_normal((3, N))):
        result = solver.hessian_vector_product(THETA, v)
        assert np.allclose(result.product, H @ v, rtol=1e-6, atol=1e-8 * np.abs(H @ v).max())
        assert result.tangent_solve.converged and result.adjoint_solve.converged
        assert result.gradient_reused == (k > 0)
    assert solver.setups == (preconditioner != "none")  # the gradient's set-up serves all


def test_gauss_newton_products_equal_the_dense_gauss_newton_hessian():
    solver = ka.AdjointSolver(problem(), preconditioner="jacobi", rtol=1e-12)
    G = dense_gauss_newton(THETA)
    for v in np.random.default_rng(1).standard_normal((3, N)):
        result = solver.gauss_newton_vector_product(THETA, v)
        assert result.gauss_newton
        assert np.allclose(result.product, G @ v, rtol=1e-8, atol=1e-10)


def test_the_hessian_is_symmetric():
    solver = ka.AdjointSolver(problem(), preconditioner="jacobi", rtol=1e-13)
    v, w = np.random.default_rng(2).standard_normal((2, N))
    Hv = solver.hessian_vector_product(THETA, v).product
    Hw = solver.hessian_vector_product(THETA, w).product
    assert transpose_mismatch(w @ Hv, v @ Hw,
                              *(np.linalg.norm(a) for a in (Hv, w, v, Hw))) <= 1e-10


def test_the_gradient_is_reused_only_at_the_same_theta():
    solver = ka.AdjointSolver(problem(), preconditioner="jacobi", rtol=1e-12)
    solver.gradient(THETA)
    assert solver.hessian_vector_product(THETA, np.ones(N)).gradient_reused
    moved = solver.hessian_vector_product(THETA + 0.1, np.ones(N))
    assert not moved.gradient_reused and moved.times["gradient"] > 0
    H = dense_hessian(THETA + 0.1)
    assert np.allclose(moved.product, H @ np.ones(N), rtol=1e-6)


def test_missing_second_order_callbacks_are_named_and_gauss_newton_still_works():
    solver = ka.AdjointSolver(problem(second_order=False), preconditioner="jacobi",
                              rtol=1e-12)
    with pytest.raises(ka.MissingCallbackError, match="operator.vjp_jvp") as info:
        solver.hessian_vector_product(THETA, np.ones(N))
    assert "rhs.vjp_jvp" in str(info.value) and "gauss_newton" in str(info.value)
    G = dense_gauss_newton(THETA)
    product = solver.gauss_newton_vector_product(THETA, np.ones(N)).product
    assert np.allclose(product, G @ np.ones(N), rtol=1e-8)


def test_a_non_finite_second_order_callback_is_named():
    base = problem()
    op = base.operator
    broken = ka.ParametricOperator(
        op._matvec, rmatvec=op._rmatvec, vjp=op._vjp, jvp=op._jvp, n=N,
        jvp_transpose=op._jvp_transpose, vjp_jvp=lambda th, x, lam, d: np.full(N, np.nan))
    bad = ka.AdjointProblem(broken, base.rhs, base.objective, n_params=N)
    solver = ka.AdjointSolver(bad, preconditioner="none", rtol=1e-12)
    with pytest.raises(ka.NonFiniteError) as info:
        solver.hessian_vector_product(THETA, np.ones(N))
    assert info.value.callback == "operator.vjp_jvp"

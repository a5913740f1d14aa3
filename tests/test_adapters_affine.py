"""Affine operators A(θ) = A₀ + Σ θ_k A_k and right-hand sides b(θ) = b₀ + Bθ."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import krylov_adjoint as ka
from krylov_adjoint.adapters import affine_operator, affine_rhs

N = 15


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def random_terms(P: int, symmetric: bool, seed: int = 0) -> list[sp.csr_matrix]:
    terms = []
    for k in range(P):
        T = sp.random(N, N, density=0.08, random_state=seed + k, format="csr")
        terms.append(sp.csr_matrix(T + T.T) if symmetric else T)
    return terms


def dense_operator(A0, terms, theta) -> np.ndarray:
    return A0.toarray() + sum(t * T.toarray() for t, T in zip(theta, terms, strict=True))


def test_values_vjp_and_jvp_against_dense_terms(rng):
    A0 = sp.random(N, N, density=0.1, random_state=99) + 4 * sp.identity(N)
    terms = random_terms(6, symmetric=False)
    op = affine_operator(A0, terms)
    assert op.structure is ka.Structure.GENERAL and op.n_params == 6
    theta = rng.standard_normal(6)
    np.testing.assert_allclose(op.matrix(theta).toarray(), dense_operator(A0, terms, theta),
                               atol=1e-14)
    x, lam, d = rng.standard_normal(N), rng.standard_normal(N), rng.standard_normal(6)
    reference = np.array([lam @ T.toarray() @ x for T in terms])  # ∂A/∂θ_k = A_k
    np.testing.assert_allclose(op.vjp(theta, x, lam), reference, rtol=1e-13, atol=1e-14)
    fd = (lam @ dense_operator(A0, terms, theta + 1e-6 * d) @ x
          - lam @ dense_operator(A0, terms, theta - 1e-6 * d) @ x) / 2e-6
    np.testing.assert_allclose(op.vjp(theta, x, lam) @ d, fd, rtol=1e-6)
    jvp = op.jvp(theta, x, d)
    np.testing.assert_allclose(jvp, sum(dk * (T @ x) for dk, T in zip(d, terms, strict=True)),
                               atol=1e-13)
    assert abs(lam @ jvp - op.vjp(theta, x, lam) @ d) <= 1e-12 * max(1.0, abs(lam @ jvp))
    y = rng.standard_normal(N)
    assert abs(y @ op.matvec(theta, x) - op.rmatvec(theta, y) @ x) <= 1e-12 * np.abs(y).sum()


def test_stacked_forms_equal_the_list_form(rng):
    terms = random_terms(4, symmetric=True)
    stacked = sp.hstack([T.reshape(N * N, 1) for T in terms]).tocsr()
    array = np.stack([T.toarray() for T in terms])
    theta, x, lam = rng.standard_normal(4), rng.standard_normal(N), rng.standard_normal(N)
    ops = [affine_operator(sp.identity(N), form) for form in (terms, stacked, array)]
    for op in ops[1:]:
        np.testing.assert_allclose(op.matrix(theta).toarray(), ops[0].matrix(theta).toarray(),
                                   atol=1e-15)
        np.testing.assert_allclose(op.vjp(theta, x, lam), ops[0].vjp(theta, x, lam),
                                   atol=1e-14)


def test_many_parameters_through_one_value_map(rng):
    """P = 3000 one-entry terms: vjp is Gᵀ(λ_i x_j), checked entry by entry."""
    P = 3000
    rows, cols = rng.integers(0, N, P), rng.integers(0, N, P)
    vals = rng.standard_normal(P)
    stacked = sp.csr_matrix((vals, (rows * N + cols, np.arange(P))), shape=(N * N, P))
    op = affine_operator(sp.identity(N), stacked)
    assert op.value_map.shape == (op.pattern.nnz, P)
    x, lam = rng.standard_normal(N), rng.standard_normal(N)
    np.testing.assert_allclose(op.vjp(np.zeros(P), x, lam), vals * lam[rows] * x[cols],
                               rtol=1e-14)


def test_structure_detection_and_checks():
    sym = random_terms(3, symmetric=True)
    assert affine_operator(sp.identity(N), sym).structure is ka.Structure.SYMMETRIC
    assert affine_operator(None, sym, structure="spd").structure is ka.Structure.SPD
    nonsym = random_terms(3, symmetric=False)
    assert affine_operator(sp.identity(N), nonsym).structure is ka.Structure.GENERAL
    with pytest.raises(ValueError, match="declared symmetric"):
        affine_operator(sp.identity(N), sym + [nonsym[0] + nonsym[0].T + sp.triu(nonsym[1])],
                        structure="spd")


def dense_csr(rows: list[list[float]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows))


@pytest.mark.parametrize("A0,terms,culprit", [
    pytest.param(sp.identity(2), [dense_csr([[0.0, 1.0], [0.0, 0.0]])],
                 r"terms\[0\] is not symmetric: \|terms\[0\]\[0, 1\] − terms\[0\]\[1, 0\]\|",
                 id="pattern-of-a-term"),
    pytest.param(sp.identity(2), [sp.identity(2), dense_csr([[0.0, 1.0], [2.0, 0.0]])],
                 r"terms\[1\] is not symmetric", id="values-of-a-term"),
    pytest.param(dense_csr([[1.0, 1.0], [0.0, 1.0]]), [sp.identity(2)],
                 r"A0 is not symmetric", id="A0"),
    pytest.param(sp.identity(3), [dense_csr([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0, 0, 0]]),
                                  sp.csr_matrix(([0.0], ([0], [2])), shape=(3, 3))],
                 r"terms\[1\] stores the entry \(0, 2\) and no matrix stores \(2, 0\)",
                 id="explicit-zero-of-a-term"),
    pytest.param(None, dense_csr([[0.0], [1.0], [0.0], [0.0]]), r"terms\[0\] is not symmetric",
                 id="stacked-column"),
    pytest.param(sp.identity(N), random_terms(3, symmetric=True)
                 + random_terms(2, symmetric=False, seed=11),
                 r"terms\[3\] is not symmetric.*\(and 1 other term\(s\)\)", id="first-of-two"),
])
def test_declared_symmetry_error_names_the_culprit_term(A0, terms, culprit):
    with pytest.raises(ValueError, match=r"declared symmetric \('spd'\), but " + culprit):
        affine_operator(A0, terms, structure="spd")


def test_input_errors():
    with pytest.raises(ValueError, match="stacked form"):
        affine_operator(sp.identity(N), sp.identity(N))
    with pytest.raises(ValueError, match="expected"):
        affine_operator(sp.identity(N), [sp.identity(N + 1)])
    with pytest.raises(TypeError, match="LinearOperator"):
        affine_operator(spla.aslinearoperator(sp.identity(N)), [sp.identity(N)])


def test_gradient_through_the_solver_matches_the_dense_adjoint(rng):
    """Diffusion-like SPD operator: J = ½‖x − d‖² + Tikhonov, CG with Jacobi."""
    P = 8
    terms = [sp.csr_matrix(T @ T.T) for T in random_terms(P, symmetric=False, seed=3)]
    A0 = sp.identity(N) * 2.0
    op = affine_operator(A0, terms, structure="spd")
    data = rng.standard_normal(N)
    objective = ka.LeastSquaresMisfit(None, data) + ka.Tikhonov(1e-3)
    rhs = affine_rhs(np.ones(N), sp.random(N, P, density=0.3, random_state=5))
    problem = ka.AdjointProblem(op, rhs, objective, n_params=P)
    theta = rng.uniform(0.5, 1.5, P)
    result = ka.AdjointSolver(problem, preconditioner="jacobi", rtol=1e-13).gradient(theta)
    A = dense_operator(A0, terms, theta)
    B = sp.random(N, P, density=0.3, random_state=5).toarray()
    x = np.linalg.solve(A, np.ones(N) + B @ theta)
    lam = np.linalg.solve(A.T, x - data)
    reference = (1e-3 * theta - np.array([lam @ T.toarray() @ x for T in terms]) + B.T @ lam)
    np.testing.assert_allclose(result.gradient, reference, rtol=1e-9, atol=1e-12)


def test_affine_rhs_with_matrix_and_linear_operator(rng):
    B = sp.random(N, 4, density=0.5, random_state=1, format="csr")
    b0 = rng.standard_normal(N)
    for form in (B, B.toarray(), spla.aslinearoperator(B)):
        rhs = affine_rhs(b0, form)
        theta, lam, d = rng.standard_normal(4), rng.standard_normal(N), rng.standard_normal(4)
        np.testing.assert_allclose(rhs.value(theta), b0 + B @ theta, atol=1e-15)
        np.testing.assert_allclose(rhs.vjp(theta, lam), B.T @ lam, atol=1e-15)
        assert abs(lam @ rhs.jvp(theta, d) - rhs.vjp(theta, lam) @ d) <= 1e-12
    with pytest.raises(ValueError, match="rows"):
        affine_rhs(np.ones(N + 1), B)

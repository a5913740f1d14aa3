"""Sparse-pattern cotangents and operators built from a simulator's own assembly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import krylov_adjoint as ka
from krylov_adjoint.adapters import SparsityPattern, from_assembly, pattern_cotangent

N, P = 12, 11  # a 1-D chain: P = N - 1 edges


def difference_matrix() -> sp.csr_matrix:
    return sp.diags([-1.0, 1.0], [0, 1], shape=(P, N), format="csr")


def chain_assemble(theta: np.ndarray) -> sp.csr_matrix:
    """A(θ) = Dᵀ diag(exp θ) D + diag(1 + θ², 1) + ½ diag(θ, −1): nonlinear, nonsymmetric."""
    D = difference_matrix()
    A = (D.T @ sp.diags(np.exp(theta)) @ D + sp.diags(np.r_[1.0 + theta**2, 1.0])
         + 0.5 * sp.diags([theta], [-1], shape=(N, N)))
    return sp.csr_matrix(A)


def chain_dense_derivatives(theta: np.ndarray) -> np.ndarray:
    """∂A/∂θ_k formed explicitly, shape (P, N, N)."""
    D = difference_matrix().toarray()
    out = np.zeros((P, N, N))
    for k in range(P):
        out[k] += np.exp(theta[k]) * np.outer(D[k], D[k])
        out[k, k, k] += 2.0 * theta[k]
        out[k, k + 1, k] += 0.5
    return out


def chain_vjp(theta: np.ndarray, values_bar: np.ndarray, A: sp.csr_matrix) -> np.ndarray:
    """The assembly VJP written against the entries of A (as a simulator would)."""
    bar = sp.csr_matrix((values_bar, A.indices, A.indptr), shape=A.shape).toarray()
    D = difference_matrix().toarray()
    out = np.exp(theta) * np.einsum("ki,ij,kj->k", D, bar, D)
    out += 2.0 * theta * np.diag(bar)[:P]
    out += 0.5 * np.diag(bar, -1)
    return out


def chain_jvp(theta: np.ndarray, dtheta: np.ndarray, A: sp.csr_matrix) -> np.ndarray:
    return on_pattern(np.einsum("k,kij->ij", dtheta, chain_dense_derivatives(theta)), A)


def on_pattern(dense: np.ndarray, A: sp.csr_matrix) -> np.ndarray:
    """The entries of a dense matrix at the stored positions of A, aligned with A.data."""
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    return dense[rows, A.indices]


def make_operator(theta0: np.ndarray, vjp=None):
    template = chain_assemble(theta0)
    vjp = vjp or (lambda th, vbar: chain_vjp(th, vbar, template))
    return from_assembly(chain_assemble, vjp, theta0,
                         assembly_jvp=lambda th, dth: chain_jvp(th, dth, template))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def central_difference(f, theta, direction, h=1e-5):
    return (f(theta + h * direction) - f(theta - h * direction)) / (2 * h)


# -- SparsityPattern ---------------------------------------------------------------------
def test_pattern_cotangent_is_outer_product_on_the_pattern(rng):
    A = sp.random(30, 30, density=0.2, random_state=1, format="csr") + sp.identity(30)
    pattern = SparsityPattern.from_matrix(A)
    lam, x = rng.standard_normal(30), rng.standard_normal(30)
    dense = pattern.matrix(pattern.cotangent(lam, x)).toarray()
    mask = pattern.matrix(np.ones(pattern.nnz)).toarray() > 0
    np.testing.assert_allclose(dense, np.where(mask, np.outer(lam, x), 0.0), rtol=1e-15)


def test_pattern_transpose_and_symmetry(rng):
    A = sp.random(25, 25, density=0.2, random_state=2, format="csr") + sp.identity(25)
    pattern = SparsityPattern.from_matrix(A + A.T)
    values = rng.standard_normal(pattern.nnz)
    np.testing.assert_array_equal(pattern.transpose(values).toarray(),
                                  pattern.matrix(values).toarray().T)
    assert pattern.is_structurally_symmetric
    assert pattern.symmetry_defect(values) > 0.1
    sym = pattern.matrix(values) + pattern.matrix(values).T
    assert pattern.symmetry_defect(sp.csr_matrix(sym).data) == 0.0
    assert not SparsityPattern.from_matrix(sp.triu(A)).is_structurally_symmetric


def test_pattern_rejects_noncanonical_indices():
    with pytest.raises(ValueError, match="sorted and unique"):
        SparsityPattern(np.array([0, 2, 2]), np.array([1, 0]), 2)
    with pytest.raises(ValueError, match="indptr"):
        SparsityPattern(np.array([0, 3, 2]), np.array([1, 0]), 2)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "dense"])
def test_pattern_cotangent_is_aligned_with_data(fmt, rng):
    A = sp.random(8, 8, density=0.4, random_state=3, format="coo")
    M = A.toarray() if fmt == "dense" else A.asformat(fmt)
    lam, x = rng.standard_normal(8), rng.standard_normal(8)
    cot = pattern_cotangent(M, lam, x)
    if fmt == "dense":
        np.testing.assert_allclose(cot, np.outer(lam, x))
        return
    # Σ_k cot_k data_k = λᵀ A x for any values in data
    assert cot.shape == M.data.shape
    np.testing.assert_allclose(cot @ M.data, lam @ (M @ x), rtol=1e-13)


def test_pattern_cotangent_refuses_matrices_without_entries():
    with pytest.raises(TypeError, match="LinearOperator"):
        pattern_cotangent(spla.aslinearoperator(sp.identity(3)), np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="BSR"):
        pattern_cotangent(sp.identity(4, format="bsr"), np.ones(4), np.ones(4))


# -- from_assembly -------------------------------------------------------------------------
def test_vjp_matches_dense_derivatives_and_finite_differences(rng):
    theta = rng.uniform(-0.5, 0.5, P)
    op = make_operator(theta)
    x, lam = rng.standard_normal(N), rng.standard_normal(N)
    got = op.vjp(theta, x, lam)
    reference = np.einsum("i,kij,j->k", lam, chain_dense_derivatives(theta), x)
    np.testing.assert_allclose(got, reference, rtol=1e-13, atol=1e-13)
    d = rng.standard_normal(P)
    fd = central_difference(lambda th: lam @ (chain_assemble(th) @ x), theta, d)
    np.testing.assert_allclose(got @ d, fd, rtol=1e-6)


def test_wrong_assembly_vjp_is_caught_by_the_comparison(rng):
    theta = rng.uniform(-0.5, 0.5, P)
    template = chain_assemble(theta)

    def transposed_vjp(th, vbar):  # a classic mistake: the cotangent read as its transpose
        bar = sp.csr_matrix((vbar, template.indices, template.indptr), shape=(N, N))
        return chain_vjp(th, on_pattern(bar.toarray().T, template), template)

    op = make_operator(theta, vjp=transposed_vjp)
    x, lam = rng.standard_normal(N), rng.standard_normal(N)
    reference = np.einsum("i,kij,j->k", lam, chain_dense_derivatives(theta), x)
    assert not np.allclose(op.vjp(theta, x, lam), reference, rtol=1e-6)


def test_jvp_vjp_and_matvec_rmatvec_dot_tests(rng):
    theta = rng.uniform(-0.5, 0.5, P)
    op = make_operator(theta)
    x, lam, y = rng.standard_normal(N), rng.standard_normal(N), rng.standard_normal(N)
    d = rng.standard_normal(P)
    lhs, rhs = lam @ op.jvp(theta, x, d), op.vjp(theta, x, lam) @ d
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)
    lhs, rhs = y @ op.matvec(theta, x), op.rmatvec(theta, y) @ x
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)
    np.testing.assert_allclose(op.matvec(theta, x), chain_assemble(theta) @ x, rtol=1e-14)


def test_pattern_change_is_refused_with_a_clear_error():
    D = difference_matrix()

    def assemble(theta):  # scipy's A + B drops the entries that cancel at theta[0] = 0
        return (sp.identity(N) + D.T @ sp.diags(theta) @ D).tocsr()

    op = from_assembly(assemble, lambda th, vbar: np.zeros(P), np.ones(P))
    op.matvec(np.full(P, 2.0), np.ones(N))
    with pytest.raises(ka.CallbackError, match="sparsity pattern of A"):
        op.matvec(np.r_[0.0, np.ones(P - 1)], np.ones(N))


def test_format_change_is_refused():
    calls = iter([sp.identity(3, format="csr"), sp.identity(3, format="csc")])
    op = from_assembly(lambda th: next(calls), lambda th, vbar: np.zeros(1), np.zeros(1))
    with pytest.raises(ka.CallbackError, match="format"):
        op.matrix(np.ones(1))


TRIPLET_ROWS = np.r_[np.arange(N), np.arange(P), np.arange(P), np.arange(P)]
TRIPLET_COLS = np.r_[np.arange(N), np.arange(P) + 1, np.arange(P), np.arange(P)]


def triplet_values(theta):
    """Entries of A(θ); the diagonal (k, k), k < P, is given three times (duplicates)."""
    return np.r_[np.full(N, 3.0), np.sin(theta), theta**2, np.exp(theta)]


def triplet_derivatives(theta):
    out = np.zeros((P, N, N))
    k = np.arange(P)
    out[k, k, k + 1] = np.cos(theta)
    out[k, k, k] = 2 * theta + np.exp(theta)
    return out


def triplet_matrix(theta, fmt):
    coo = sp.coo_matrix((triplet_values(theta), (TRIPLET_ROWS, TRIPLET_COLS)), shape=(N, N))
    if fmt == "coo_duplicates":
        return coo
    if fmt == "dense":
        return coo.toarray()
    if fmt == "csc":
        return coo.tocsc()
    A = coo.tocsr()  # "unsorted_csr": the columns of each row reversed, data alongside
    for a, b in zip(A.indptr[:-1], A.indptr[1:], strict=True):
        A.indices[a:b], A.data[a:b] = A.indices[a:b][::-1].copy(), A.data[a:b][::-1].copy()
    A.has_sorted_indices = False
    return A


def coordinates(A):
    """(row, column) of each entry of A.data, computed independently of the library."""
    if A.format == "coo":
        return A.row, A.col
    outer = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    return (A.indices, outer) if A.format == "csc" else (outer, A.indices)


@pytest.mark.parametrize("fmt", ["coo_duplicates", "csc", "dense", "unsorted_csr"])
def test_other_layouts_give_the_same_vjp(fmt, rng):
    """The cotangent handed to assembly_vjp is aligned with the user's own data."""

    def vjp(theta, values_bar):
        if fmt == "dense":
            bar = values_bar
        else:
            bar = np.zeros((N, N))
            bar[coordinates(triplet_matrix(theta, fmt))] = values_bar
        return np.einsum("ij,kij->k", bar, triplet_derivatives(theta))

    theta0 = rng.uniform(-0.5, 0.5, P)
    op = from_assembly(lambda th: triplet_matrix(th, fmt), vjp, theta0)
    theta = theta0 + 0.1
    dense = lambda th: sp.csr_matrix(triplet_matrix(th, "csc")).toarray()  # noqa: E731
    x, lam = rng.standard_normal(N), rng.standard_normal(N)
    d = rng.standard_normal(P)
    fd = central_difference(lambda th: lam @ dense(th) @ x, theta, d)
    np.testing.assert_allclose(op.vjp(theta, x, lam) @ d, fd, rtol=1e-6)
    np.testing.assert_allclose(op.matvec(theta, x), dense(theta) @ x, rtol=1e-14)
    np.testing.assert_allclose(op.rmatvec(theta, x), dense(theta).T @ x, rtol=1e-14)


def test_declared_symmetry_is_checked():
    with pytest.raises(ValueError, match="declared symmetric"):
        from_assembly(chain_assemble, lambda th, vbar: np.zeros(P), np.ones(P),
                      structure="symmetric")


def test_assembles_once_per_theta_through_the_solver(rng):
    theta0 = rng.uniform(-0.5, 0.5, P)
    op = make_operator(theta0)
    target = rng.standard_normal(N)
    problem = ka.AdjointProblem(op, np.ones(N), ka.LeastSquaresMisfit(None, target),
                                n_params=P)
    # the engine's derivative check assembles at θ ± h dθ at each set-up: off here
    solver = ka.AdjointSolver(problem, preconditioner="ilu", rtol=1e-12, check_gradient=False)
    result = solver.gradient(theta0)
    assert op.assembly_count == 1  # the pattern-learning assembly at theta0 is reused
    solver.gradient(theta0 + 0.1)
    assert op.assembly_count == 2
    checked = ka.AdjointSolver(problem, preconditioner="ilu", rtol=1e-12)
    checked.gradient(theta0 + 0.2)
    assert op.assembly_count == 5  # θ, then θ ± h dθ for the check at the set-up
    # the dense adjoint reference
    A = chain_assemble(theta0).toarray()
    x = np.linalg.solve(A, np.ones(N))
    lam = np.linalg.solve(A.T, x - target)
    reference = -np.einsum("i,kij,j->k", lam, chain_dense_derivatives(theta0), x)
    np.testing.assert_allclose(result.gradient, reference, rtol=1e-8, atol=1e-12)


def test_petsc_matrices_are_read_through_getvaluescsr(rng):
    PETSc = pytest.importorskip("petsc4py.PETSc")
    theta0 = rng.uniform(-0.5, 0.5, P)
    template = chain_assemble(theta0)

    def assemble(th):
        A = chain_assemble(th)
        csr = (A.indptr.astype(PETSc.IntType), A.indices.astype(PETSc.IntType), A.data)
        M = PETSc.Mat().createAIJ(size=A.shape, csr=csr, comm=PETSc.COMM_SELF)
        M.assemble()
        return M

    op = from_assembly(assemble, lambda th, vbar: chain_vjp(th, vbar, template), theta0)
    x, lam = rng.standard_normal(N), rng.standard_normal(N)
    reference = np.einsum("i,kij,j->k", lam, chain_dense_derivatives(theta0), x)
    np.testing.assert_allclose(op.vjp(theta0, x, lam), reference, rtol=1e-12, atol=1e-13)

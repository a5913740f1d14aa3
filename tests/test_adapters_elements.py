"""Element operators K(θ) = Σ_e s(ρ_e) K_e against dense references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import krylov_adjoint as ka
from krylov_adjoint.adapters import _element_map, element_operator, simp


def quad_stiffness(nu: float = 0.3) -> np.ndarray:
    """Bilinear quad, plane stress, unit Young's modulus (the classic 88-line matrix)."""
    k = np.array([1 / 2 - nu / 6, 1 / 8 + nu / 8, -1 / 4 - nu / 12, -1 / 8 + 3 * nu / 8,
                  -1 / 4 + nu / 12, -1 / 8 - nu / 8, nu / 6, 1 / 8 - 3 * nu / 8])
    order = [[0, 1, 2, 3, 4, 5, 6, 7], [1, 0, 7, 6, 5, 4, 3, 2], [2, 7, 0, 5, 6, 3, 4, 1],
             [3, 6, 5, 0, 7, 2, 1, 4], [4, 5, 6, 7, 0, 1, 2, 3], [5, 4, 3, 2, 1, 0, 7, 6],
             [6, 3, 4, 1, 2, 7, 0, 5], [7, 2, 1, 4, 3, 6, 5, 0]]
    return k[np.array(order)] / (1 - nu**2)


def quad_mesh(nelx: int, nely: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Connectivity (E, 8) of a structured quad mesh, N, and node coordinates."""
    ex, ey = np.meshgrid(np.arange(nelx), np.arange(nely), indexing="ij")
    n1 = ((nely + 1) * ex + ey).ravel()
    n2 = ((nely + 1) * (ex + 1) + ey).ravel()
    nodes = np.stack([n1 + 1, n2 + 1, n2, n1], axis=1)
    conn = np.stack([2 * nodes, 2 * nodes + 1], axis=2).reshape(-1, 8)
    gx, gy = np.meshgrid(np.arange(nelx + 1), np.arange(nely + 1), indexing="ij")
    coords = np.stack([gx.ravel(), -gy.ravel()], axis=1).astype(float)
    return conn, 2 * (nelx + 1) * (nely + 1), coords


def dense_assembly(Ke, conn, n, scales, free):
    K = np.zeros((n, n))
    for e in range(conn.shape[0]):
        Km = Ke if Ke.ndim == 2 else Ke[e]
        K[np.ix_(conn[e], conn[e])] += scales[e] * Km
    D = np.diag(free.astype(float))
    return D @ K @ D + np.diag((~free).astype(float)), K


def dense_derivatives(Ke, conn, n, dscales, free):
    """∂K/∂θ_e formed explicitly (eliminated rows and columns removed), shape (E, N, N)."""
    out = np.zeros((conn.shape[0], n, n))
    D = np.diag(free.astype(float))
    for e in range(conn.shape[0]):
        Km = Ke if Ke.ndim == 2 else Ke[e]
        out[e][np.ix_(conn[e], conn[e])] = dscales[e] * Km
        out[e] = D @ out[e] @ D
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


@pytest.fixture
def mesh():
    conn, n, coords = quad_mesh(4, 3)
    free = np.ones(n, dtype=bool)
    free[: 2 * 4] = False  # the left edge (4 nodes) clamped
    return conn, n, free, coords


SCALINGS = {
    "linear": (lambda t: t, lambda t: np.ones_like(t)),
    "exp": (np.exp, np.exp),
    "simp": (lambda t: 1e-9 + (1 - 1e-9) * t**3, lambda t: 3 * (1 - 1e-9) * t**2),
}


@pytest.mark.parametrize("clamped", [True, False], ids=["clamped", "free"])
@pytest.mark.parametrize("per_element", [False, True], ids=["reference", "per-element"])
@pytest.mark.parametrize("law", sorted(SCALINGS))
def test_matrix_and_vjp_against_dense_reference(law, per_element, clamped, mesh, rng):
    conn, n, free, _ = mesh
    if not clamped:
        free = np.ones(n, dtype=bool)
    E = conn.shape[0]
    Ke = quad_stiffness()
    if per_element:
        Ke = Ke * rng.uniform(0.5, 2.0, E)[:, None, None]
    op = element_operator(Ke, conn, n, scaling=law, dirichlet_dofs=~free,
                          structure="spd" if clamped else "symmetric")
    theta = rng.uniform(0.2, 1.0, E)
    s, ds = (f(theta) for f in SCALINGS[law])
    K, _ = dense_assembly(Ke, conn, n, s, free)
    np.testing.assert_allclose(op.matrix(theta).toarray(), K, atol=1e-14)
    x, lam = rng.standard_normal(n), rng.standard_normal(n)
    reference = np.einsum("i,eij,j->e", lam, dense_derivatives(Ke, conn, n, ds, free), x)
    got = op.vjp(theta, x, lam)
    np.testing.assert_allclose(got, reference, rtol=1e-12, atol=1e-13)
    # the element formula agrees with the generic pattern path Gᵀ(λ_i x_j)
    np.testing.assert_allclose(op.values_vjp(theta, op.pattern.cotangent(lam, x)), got,
                               rtol=1e-12, atol=1e-13)
    d = rng.standard_normal(E)
    h = 1e-6
    fd = (lam @ op.matrix(theta + h * d) @ x - lam @ op.matrix(theta - h * d) @ x) / (2 * h)
    np.testing.assert_allclose(got @ d, fd, rtol=1e-6)
    jvp = op.jvp(theta, x, d)
    assert abs(lam @ jvp - got @ d) <= 1e-12 * max(1.0, abs(lam @ jvp))
    y = rng.standard_normal(n)
    assert abs(y @ op.matvec(theta, x) - op.rmatvec(theta, y) @ x) <= 1e-12 * n


@pytest.mark.parametrize("per_element", [False, True], ids=["reference", "per-element"])
def test_assembly_in_element_chunks_equals_one_pass(per_element, mesh, rng, monkeypatch):
    conn, n, free, _ = mesh
    Ke = quad_stiffness()
    if per_element:
        Ke = Ke * rng.uniform(0.5, 2.0, (conn.shape[0], 1, 1))
    theta = rng.uniform(0.2, 1.0, conn.shape[0])
    whole = element_operator(Ke, conn, n, dirichlet_dofs=~free)
    monkeypatch.setattr(_element_map, "CHUNK_ENTRIES", 5 * 64 + 1)  # chunks of 5 elements
    chunked = element_operator(Ke, conn, n, dirichlet_dofs=~free)
    assert chunked.assembly._chunk == 5
    v = rng.standard_normal(whole.pattern.nnz)
    np.testing.assert_allclose(chunked.values(theta), whole.values(theta), rtol=1e-15,
                               atol=1e-15)
    np.testing.assert_allclose(chunked.assembly.element_sums(v),
                               whole.assembly.element_sums(v), rtol=1e-13)
    dense, _ = dense_assembly(Ke, conn, n, theta, free)
    np.testing.assert_allclose(chunked.matrix(theta).toarray(), dense, atol=1e-14)


def test_eliminated_dofs_do_not_enter_the_gradient(mesh, rng):
    conn, n, free, _ = mesh
    op = element_operator(quad_stiffness(), conn, n, dirichlet_dofs=~free)
    theta = rng.uniform(0.2, 1.0, conn.shape[0])
    x, lam = rng.standard_normal(n), rng.standard_normal(n)
    x2, lam2 = x.copy(), lam.copy()
    x2[~free] += 10.0
    lam2[~free] -= 3.0
    np.testing.assert_array_equal(op.vjp(theta, x, lam), op.vjp(theta, x2, lam2))
    assert not np.allclose(op.element_products(lam, x), op.element_products(lam2, x2))


def test_nonsymmetric_elements_and_a_custom_law(rng):
    """Random nonsymmetric 3-node elements, s(θ) = θ² + sin θ given as a callable pair."""
    n, E = 20, 25
    conn = np.array([rng.choice(n, 3, replace=False) for _ in range(E)])
    conn[: n // 3] = np.arange(n - n % 3).reshape(-1, 3)  # every dof in some element
    Ke = rng.standard_normal((E, 3, 3)) + 3 * np.eye(3)
    law = (lambda t: t**2 + np.sin(t), lambda t: 2 * t + np.cos(t))
    orphans = np.setdiff1d(np.arange(n), conn)
    op = element_operator(Ke, conn, n, scaling=law, dirichlet_dofs=orphans)
    assert op.structure is ka.Structure.GENERAL
    free = np.ones(n, dtype=bool)
    free[orphans] = False
    theta = rng.uniform(0.1, 1.0, E)
    K, _ = dense_assembly(Ke, conn, n, law[0](theta), free)
    np.testing.assert_allclose(op.matrix(theta).toarray(), K, atol=1e-13)
    x, lam = rng.standard_normal(n), rng.standard_normal(n)
    reference = np.einsum("i,eij,j->e", lam,
                          dense_derivatives(Ke, conn, n, law[1](theta), free), x)
    np.testing.assert_allclose(op.vjp(theta, x, lam), reference, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(op.rmatvec(theta, x), K.T @ x, atol=1e-13)


@pytest.mark.parametrize("kind", ["sparse", "linear_operator"])
def test_parameter_map_filters_the_design(kind, mesh, rng):
    conn, n, free, _ = mesh
    E = conn.shape[0]
    H = sp.random(E, E // 2, density=0.3, random_state=4, format="csr") + sp.eye(E, E // 2)
    H = sp.csr_matrix(H.multiply(1.0 / H.sum(axis=1)))  # a row-normalised filter
    Hmap = H if kind == "sparse" else spla.aslinearoperator(H)
    op = element_operator(quad_stiffness(), conn, n, scaling=simp(3.0, 1e-3),
                          dirichlet_dofs=~free, parameter_map=Hmap, structure="spd")
    assert op.n_params == E // 2
    theta = rng.uniform(0.2, 1.0, E // 2)
    np.testing.assert_allclose(op.densities(theta), H @ theta)
    x, lam, d = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(E // 2)
    got = op.vjp(theta, x, lam)
    h = 1e-6
    fd = (lam @ op.matrix(theta + h * d) @ x - lam @ op.matrix(theta - h * d) @ x) / (2 * h)
    np.testing.assert_allclose(got @ d, fd, rtol=1e-6)
    assert abs(lam @ op.jvp(theta, x, d) - got @ d) <= 1e-12 * max(1.0, abs(got @ d))


def test_dirichlet_rhs_gives_the_constrained_solution_and_its_derivatives(mesh, rng):
    conn, n, free, _ = mesh
    E = conn.shape[0]
    op = element_operator(quad_stiffness(), conn, n, scaling="exp", dirichlet_dofs=~free,
                          structure="spd")
    g = rng.standard_normal((~free).sum())
    f = rng.standard_normal(n)
    rhs = op.dirichlet_rhs(f, g)
    theta = rng.uniform(-0.5, 0.5, E)
    x = np.linalg.solve(op.matrix(theta).toarray(), rhs.value(theta))
    _, Kfull = dense_assembly(quad_stiffness(), conn, n, np.exp(theta), free)
    np.testing.assert_allclose(x[~free], g, atol=1e-12)
    np.testing.assert_allclose((Kfull @ x - f)[free], 0.0, atol=1e-10)
    lam, d = rng.standard_normal(n), rng.standard_normal(E)
    h = 1e-6
    fd = (lam @ rhs.value(theta + h * d) - lam @ rhs.value(theta - h * d)) / (2 * h)
    np.testing.assert_allclose(rhs.vjp(theta, lam) @ d, fd, rtol=1e-6)
    assert abs(lam @ rhs.jvp(theta, d) - rhs.vjp(theta, lam) @ d) <= 1e-12 * abs(fd)
    homogeneous = op.dirichlet_rhs(f)
    assert not homogeneous.depends_on_theta
    np.testing.assert_array_equal(homogeneous.value(None), np.where(free, f, 0.0))


def test_gradient_through_the_solver_with_compliance(mesh, rng):
    """Compliance J = fᵀx of a SIMP cantilever, CG + ILU, against the dense adjoint."""
    conn, n, free, _ = mesh
    E = conn.shape[0]
    op = element_operator(quad_stiffness(), conn, n, scaling="simp", dirichlet_dofs=~free,
                          structure="spd")
    f = np.zeros(n)
    f[-1] = -1.0
    problem = ka.AdjointProblem(op, op.dirichlet_rhs(f), ka.LinearFunctional(f), n_params=E)
    theta = rng.uniform(0.3, 1.0, E)
    result = ka.AdjointSolver(problem, preconditioner="ilu", rtol=1e-12,
                              check_gradient=False).gradient(theta)
    K, _ = dense_assembly(quad_stiffness(), conn, n, 1e-9 + (1 - 1e-9) * theta**3, free)
    u = np.linalg.solve(K, f)
    derivatives = dense_derivatives(quad_stiffness(), conn, n, 3 * (1 - 1e-9) * theta**2, free)
    reference = -np.einsum("i,eij,j->e", u, derivatives, u)  # λ = u for compliance
    np.testing.assert_allclose(result.objective, f @ u, rtol=1e-10)
    np.testing.assert_allclose(result.gradient, reference, rtol=1e-7, atol=1e-12)
    assert op.assembly_count == 1


def rigid_body_modes(coords: np.ndarray, free: np.ndarray) -> np.ndarray:
    x, y = coords[:, 0], coords[:, 1]
    B = np.zeros((2 * len(x), 3))
    B[0::2, 0] = 1.0
    B[1::2, 1] = 1.0
    B[0::2, 2], B[1::2, 2] = -y, x
    B[~free] = 0.0
    return B


def test_amg_with_rigid_body_near_nullspace(rng):
    pytest.importorskip("krylov_adjoint.precond.amg")
    conn, n, coords = quad_mesh(24, 12)
    free = np.ones(n, dtype=bool)
    free[: 2 * 13] = False
    op = element_operator(quad_stiffness(), conn, n, scaling="simp", dirichlet_dofs=~free,
                          structure="spd")
    f = np.zeros(n)
    f[-1] = -1.0
    E = conn.shape[0]
    problem = ka.AdjointProblem(op, op.dirichlet_rhs(f), ka.LinearFunctional(f), n_params=E)
    solver = ka.AdjointSolver(problem, preconditioner="amg", rtol=1e-10,
                              preconditioner_options={"near_nullspace":
                                                      rigid_body_modes(coords, free)})
    theta = rng.uniform(0.3, 1.0, E)
    result = solver.gradient(theta)
    u = spla.spsolve(op.matrix(theta).tocsc(), f)
    np.testing.assert_allclose(result.gradient, op.vjp(theta, u, -u), rtol=1e-6,
                               atol=1e-8 * np.abs(result.gradient).max())
    assert result.primal.iterations < 60


def test_input_errors(mesh):
    conn, n, free, _ = mesh
    Ke = quad_stiffness()
    with pytest.raises(ValueError, match="belong to no element"):
        element_operator(Ke, conn, n + 2)
    with pytest.raises(ValueError, match="shape"):
        element_operator(Ke[:4, :4], conn, n)
    with pytest.raises(ValueError, match=r"\[0, n_dofs\)"):
        element_operator(Ke, conn + 1, n)
    with pytest.raises(ValueError, match="not symmetric"):
        element_operator(Ke + np.triu(np.ones((8, 8)), 1), conn, n, structure="spd")
    with pytest.raises(ValueError, match="parameter_map"):
        element_operator(Ke, conn, n, parameter_map=sp.identity(3))
    with pytest.raises(ValueError, match="scaling must be"):
        element_operator(Ke, conn, n, scaling="cubic")

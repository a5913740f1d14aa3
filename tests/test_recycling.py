"""Krylov recycling: deflated CG and GCRO-DR against the plain methods, the projectors'
transposes, iteration savings on slowly changing systems, gradients with and without a
recycled space, its survival across a preconditioner set-up, and bad options."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    SOLVE_RTOL,
    check_gradient,
    dense_reference,
    params,
    relative_error,
    run,
    run_case,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import krylov_adjoint as ka
from krylov_adjoint import gallery
from krylov_adjoint._transpose import transpose_mismatch
from krylov_adjoint.errors import InputError
from krylov_adjoint.krylov import solve
from krylov_adjoint.krylov.recycling import RecycledSpace
from krylov_adjoint.precond import ILUPreconditioner, JacobiPreconditioner

RTOL = 1e-10


# -- random systems -----------------------------------------------------------------------------
def random_spd(rng: np.random.Generator, n: int) -> np.ndarray:
    """Q diag(λ) Qᵀ with λ spread over two decades (a few small ones to deflate)."""
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    values = np.concatenate([rng.uniform(1e-2, 5e-2, 3), rng.uniform(0.5, 2.0, n - 3)])
    return (Q * values) @ Q.T


def random_nonsymmetric(rng: np.random.Generator, n: int) -> np.ndarray:
    """A nonsymmetric, well-posed matrix with a few small eigenvalues."""
    return random_spd(rng, n) + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)


def preconditioner(kind: str, A: np.ndarray):
    if kind == "jacobi":
        return JacobiPreconditioner(sp.csr_matrix(A))
    if kind == "ilu":
        return ILUPreconditioner(sp.csr_matrix(A), drop_tol=1e-1)
    return None


def primed(method: str, A: np.ndarray, M, b: np.ndarray, k: int) -> RecycledSpace:
    """A space harvested by one solve with A."""
    space = RecycledSpace(k, b.size)
    space.refresh(lambda v: A @ v, ("first",))
    solve(A, b, method=method, M=M, rtol=RTOL, recycle=space)
    assert space.dim > 0
    return space


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(12, 40), k=st.integers(1, 8),
       method=st.sampled_from(["cg", "gmres"]), pc=st.sampled_from(["none", "jacobi", "ilu"]),
       warm=st.booleans(), restart=st.sampled_from([4, 30]))
def test_recycled_solvers_give_the_plain_solution(seed, n, k, method, pc, warm, restart):
    """On a system close to the one the space came from, with or without x0, the recycled
    solve meets the same stopping rule and gives the plain solve's solution (GMRES with a
    short restart too: the space is renewed at every cycle)."""
    if method == "cg" and pc == "ilu":
        pc = "jacobi"  # CG needs a symmetric preconditioner
    rng = np.random.default_rng(seed)
    make = random_spd if method == "cg" else random_nonsymmetric
    A0 = make(rng, n)
    E = rng.standard_normal((n, n)) * 1e-4 / np.sqrt(n)  # ‖E + Eᵀ‖ < 1e-2 / 2
    A1 = A0 + (E + E.T if method == "cg" else E)
    b0, b1 = rng.standard_normal(n), rng.standard_normal(n)
    space = primed(method, A0, preconditioner(pc, A0), b0, k)
    M = preconditioner(pc, A1)
    space.refresh(lambda v: A1 @ v, ("second",))
    x0 = rng.standard_normal(n) if warm else None
    plain = solve(A1, b1, method=method, M=M, x0=x0, rtol=RTOL, restart=restart,
                  maxiter=5000)
    recycled = solve(A1, b1, method=method, M=M, x0=x0, rtol=RTOL, restart=restart,
                     maxiter=5000, recycle=space)
    assert recycled.converged, recycled.message
    assert np.linalg.norm(A1 @ recycled.x - b1) <= RTOL * np.linalg.norm(b1) * (1 + 1e-6)
    exact = np.linalg.solve(A1, b1)
    scale = np.linalg.cond(A1) * RTOL * 10
    assert relative_error(recycled.x, exact) <= scale
    # GMRES(4) may stagnate where GCRO-DR(4, k) does not; when it converges, it agrees
    if plain.converged:
        assert relative_error(plain.x, exact) <= scale
        assert relative_error(recycled.x, plain.x) <= 2 * scale
    else:
        assert method == "gmres" and restart < n, plain.message
    assert 0 < recycled.extra["recycled_dimension"] <= k


# -- the projectors, dot-tested ---------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 40), k=st.integers(1, 6))
def test_projectors_and_deflated_operators_pass_the_dot_test(seed, n, k):
    """``I − CᵀC`` and ``Π = I − Uᵀ E⁻¹ C`` against their claimed transposes, and the
    deflated operators: ``A Π`` is symmetric for a symmetric A, ``(I − CᵀC) A`` has the
    transpose ``Aᵀ (I − CᵀC)``. A wrong transpose gives a mismatch of order one."""
    rng = np.random.default_rng(seed)
    A = random_spd(rng, n)
    space = RecycledSpace(k, n)  # a random space: no invariant subspace of A
    U = rng.standard_normal((k, n))
    space.replace(U, U, U @ A.T)
    u, v = rng.standard_normal(n), rng.standard_normal(n)

    def mismatch(forward, transposed):
        Fu, Tv = forward(u), transposed(v)
        return transpose_mismatch(float(Fu @ v), float(u @ Tv), np.linalg.norm(Fu),
                                  np.linalg.norm(v), np.linalg.norm(u), np.linalg.norm(Tv))

    P, Pi = space.residual_projector(), space.galerkin_projector()
    assert mismatch(P.matvec, P.rmatvec) < 1e-12
    assert mismatch(Pi.matvec, Pi.rmatvec) < 1e-12
    assert mismatch(lambda w: A @ Pi.matvec(w), lambda w: A @ Pi.matvec(w)) < 1e-10
    assert mismatch(lambda w: P.matvec(A @ w), lambda w: A.T @ P.matvec(w)) < 1e-12
    # the claimed transposes are not the maps themselves (the test can fail)
    assert mismatch(Pi.matvec, Pi.matvec) > 1e-6
    # the projections the solves start from
    x, r = np.zeros(n), rng.standard_normal(n)
    space.project(x, r)
    assert np.linalg.norm(space.C @ r) < 1e-12 * np.linalg.norm(r) * n
    x, r = np.zeros(n), rng.standard_normal(n)
    space.project_galerkin(x, r)
    assert np.linalg.norm(space.U @ r) <= 1e-8 * np.linalg.norm(space.U) * np.linalg.norm(r)


# -- iterations on a sequence of slowly changing systems --------------------------------------
def diffusion_sequence(n: int, steps: int):
    """1-D diffusion with a slowly drifting coefficient: SPD, ill-conditioned."""
    rng = np.random.default_rng(3)
    log_k = rng.standard_normal(n + 1) * 0.5
    for _ in range(steps):
        k = np.exp(log_k)
        yield sp.diags([-k[1:-1], k[:-1] + k[1:], -k[1:-1]], [-1, 0, 1], format="csr")
        log_k = log_k + 0.01 * rng.standard_normal(n + 1)


@pytest.mark.parametrize("method", ["cg", "gmres"])
def test_recycling_reduces_iterations_on_slowly_changing_systems(method):
    """Over 8 systems, a recycled space of 10 vectors saves at least 20 % of the iterations
    of the plain (Jacobi-preconditioned) method; GMRES(30) on a variant with a weak
    convection (nonsymmetric, its small eigenvalues still apart: measured 4161 → 1593)."""
    n, rng = 300, np.random.default_rng(0)
    b = rng.standard_normal(n)
    space = RecycledSpace(10, n)
    totals = {"plain": 0, "recycled": 0}
    for step, A in enumerate(diffusion_sequence(n, 8)):
        if method == "gmres":
            A = A + sp.diags([1e-3 * A.diagonal()[:-1]], [1], format="csr")
        M = JacobiPreconditioner(A)
        space.refresh(lambda v, A=A: A @ v, (step,))
        plain = solve(A, b, method=method, M=M, rtol=1e-8, restart=30, maxiter=20000)
        recycled = solve(A, b, method=method, M=M, rtol=1e-8, restart=30, maxiter=20000,
                         recycle=space)
        assert plain.converged and recycled.converged
        totals["plain"] += plain.iterations
        totals["recycled"] += recycled.iterations
    assert totals["recycled"] <= 0.8 * totals["plain"], totals


# -- gradients ------------------------------------------------------------------------------------
def path(model, steps: int = 4, size: float = 0.05):
    rng = np.random.default_rng(7)
    theta = np.array(model.theta, copy=True)
    for _ in range(steps):
        yield theta
        theta = theta + size * rng.standard_normal(theta.size)


@pytest.mark.parametrize("problem, method, pc", [
    ("diffusion", "cg", "amg"), ("diffusion", "cg", "jacobi"), ("diffusion", "gmres", "none"),
    ("convection", "gmres", "jacobi"), ("convection", "gmres", "amg"),
])
def test_gradients_with_recycling_equal_those_without(problem, method, pc):
    """Along a path of θ, the serial gradients with recycle=6 equal those with recycle=0 and
    the dense reference."""
    model = (gallery.diffusion_2d(9, 8) if problem == "diffusion"
             else gallery.convection_diffusion_2d(9, 8, peclet=20.0))
    with run("serial", model, method=method, preconditioner=pc) as plain, \
            run("serial", model, method=method, preconditioner=pc, recycle=6) as recycled:
        for theta in path(model):
            a, b = plain.solver.gradient(theta), recycled.solver.gradient(theta)
            check_gradient(b, b.gradient, dense_reference(model, theta))
            assert relative_error(b.gradient, a.gradient) < 1e-7
            for solve_result in (b.primal, b.adjoint_solve):
                assert solve_result.extra["recycled_dimension"] >= 0
                assert solve_result.extra["iterations_saved"] >= 0
        assert b.primal.extra["recycled_dimension"] > 0
        record = b.as_dict()
        assert record["primal_recycled_dimension"] == b.primal.extra["recycled_dimension"]
        assert record["adjoint_iterations_saved"] == b.adjoint_solve.extra["iterations_saved"]
        assert "primal_recycled_dimension" not in a.as_dict()


@pytest.mark.parametrize("case", params(backends=["serial"],
                                        methods=["auto", "gmres", "cg"]))
def test_registry_gradients_with_recycling_match_the_dense_reference(case):
    """Every serial registry case that can recycle, at two points of θ (the second one
    deflated by the first one's space), against the dense reference."""
    with run_case(case, recycle=5) as r:
        model = r.model
        for theta in (model.theta, model.theta + 0.1):
            result = r.solver.gradient(theta)
            check_gradient(result, result.gradient, dense_reference(model, theta))
        assert result.primal.extra["recycled_dimension"] > 0


def test_symmetric_problems_share_one_space_nonsymmetric_keep_two():
    """The engine's one rule: CG on an SPD problem renews one space from both solves;
    GMRES on a nonsymmetric one keeps a primal and an adjoint space."""
    spd = gallery.diffusion_2d(8)
    solver = ka.AdjointSolver(spd.problem, method="cg", preconditioner="jacobi", recycle=4)
    solver.gradient(spd.theta)
    assert set(solver.backend.spaces) == {"primal"}
    nonsymmetric = gallery.convection_diffusion_2d(8)
    solver = ka.AdjointSolver(nonsymmetric.problem, method="gmres", preconditioner="jacobi",
                              recycle=4)
    solver.gradient(nonsymmetric.theta)
    assert set(solver.backend.spaces) == {"primal", "adjoint"}


def test_second_order_solves_read_the_spaces_without_renewing_them():
    """A Hessian action with recycling equals the one without, and leaves the gradient's
    spaces as they were."""
    model = gallery.diffusion_2d(7, 6)
    direction = np.linspace(-1.0, 1.0, model.n_params)
    plain = ka.AdjointSolver(model.problem, rtol=SOLVE_RTOL, preconditioner="jacobi")
    recycled = ka.AdjointSolver(model.problem, rtol=SOLVE_RTOL, preconditioner="jacobi",
                                recycle=5)
    recycled.gradient(model.theta)
    space = recycled.backend.spaces["primal"]
    kept = space.U.copy()
    expected = plain.hessian_vector_product(model.theta, direction).product
    got = recycled.hessian_vector_product(model.theta, direction)
    assert relative_error(got.product, expected) < 1e-7
    assert got.tangent_solve.extra["recycled_dimension"] > 0
    assert recycled.backend.spaces["primal"] is space
    np.testing.assert_array_equal(space.U, kept)


def test_the_space_survives_a_preconditioner_set_up():
    """After a requested set-up, the space is re-orthogonalised against the operator (not
    dropped): the next solve still deflates it and reports its dimension."""
    model = gallery.convection_diffusion_2d(12, peclet=20.0)
    solver = ka.AdjointSolver(model.problem, method="gmres", preconditioner="ilu", recycle=6)
    for theta in path(model, steps=3):
        solver.gradient(theta)
    space = solver.backend.spaces["primal"]
    refreshes, dim = space.refreshes, space.dim
    assert dim > 0
    solver.rebuild_preconditioner()
    result = solver.gradient(theta)
    assert result.preconditioner_rebuilt
    assert space.refreshes == refreshes + 1
    assert result.primal.extra["recycled_dimension"] == dim
    np.testing.assert_allclose(space.C @ space.C.T, np.eye(space.dim), atol=1e-10)
    AU = np.array([solver.problem.bind(theta).matvec(u) for u in space.U])
    np.testing.assert_allclose(AU, space.C, atol=1e-8 * np.abs(AU).max())


def test_warm_start_is_projected_on_the_space():
    """A warm-started recycled solve starts from a residual no larger than the warm
    start's (the projection minimises it over the space)."""
    model = gallery.convection_diffusion_2d(10, peclet=20.0)
    solver = ka.AdjointSolver(model.problem, method="gmres", preconditioner="jacobi", recycle=6)
    for theta in path(model, steps=4):
        result = solver.gradient(theta)
    primal = result.primal
    assert primal.residual_norms[0] <= primal.extra["residual_before_projection"] * (1 + 1e-12)


def test_iterations_saved_is_the_estimate_against_a_cold_start():
    """``iterations_saved = log(‖b‖/‖r₀‖) / log(1/ρ)``, ρ the solve's own mean reduction per
    iteration: what the solve would have spent to get from x = 0 to its start."""
    model = gallery.convection_diffusion_2d(10, peclet=20.0)
    solver = ka.AdjointSolver(model.problem, method="gmres", preconditioner="jacobi", recycle=6)
    for theta in path(model, steps=3):
        result = solver.gradient(theta)
    for solve_result in (result.primal, result.adjoint_solve):
        norms = solve_result.residual_norms
        rate = (norms[-1] / norms[0]) ** (1.0 / solve_result.iterations)
        expected = np.log(solve_result.rhs_norm / norms[0]) / -np.log(rate)
        assert expected > 1.0  # the warm, projected start is far from the cold one
        assert solve_result.extra["iterations_saved"] == pytest.approx(expected, rel=1e-12)


# -- bad options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("recycle, match", [
    (-1, "whole number >= 0"), (2.5, "whole number >= 0"), (True, "whole number >= 0"),
    (64, "fewer than the 64 unknowns"), (1000, "fewer than the 64 unknowns"),
])
def test_bad_recycle_is_refused(recycle, match):
    model = gallery.diffusion_2d(8)
    with pytest.raises(ValueError, match=match):
        ka.AdjointSolver(model.problem, recycle=recycle)


def test_bicgstab_does_not_recycle():
    model = gallery.diffusion_2d(8)
    with pytest.raises(ValueError, match="recycle=4 needs a method that recycles"):
        ka.AdjointSolver(model.problem, method="bicgstab", recycle=4)
    A = sp.identity(10, format="csr")
    with pytest.raises(InputError, match="does not recycle"):
        solve(A, np.ones(10), method="bicgstab", recycle=RecycledSpace(2, 10))
    with pytest.raises(InputError, match="length 9"):
        solve(A, np.ones(10), method="gmres", recycle=RecycledSpace(2, 9))

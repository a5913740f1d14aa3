"""Preconditioner specifications given to AdjointSolver, and preconditioner symmetry."""

from __future__ import annotations

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import krylov_adjoint as ka
from krylov_adjoint.gallery import diffusion_2d
from krylov_adjoint.krylov import solve
from krylov_adjoint.precond import (
    AMGPreconditioner,
    ILUPreconditioner,
    JacobiPreconditioner,
    PreconditionerSource,
    resolve_preconditioner,
)


# -- E. ILU is not a symmetric map ------------------------------------------------------------
def test_ilu_declares_itself_nonsymmetric_and_cg_refuses_it_with_the_reason():
    model = diffusion_2d(8)
    M = ILUPreconditioner(model.problem.assemble(model.theta))
    assert M.is_symmetric is False and "spilu" in M.asymmetry
    with pytest.raises(ValueError, match="conjugate gradients need a symmetric preconditioner.*"
                                         "spilu"):
        solve(model.problem.assemble(model.theta), np.ones(model.n), method="cg", M=M)


def test_auto_method_with_ilu_on_an_spd_problem_uses_gmres_and_converges():
    model = diffusion_2d(64)  # CG with this ILU stops at maxiter without converging
    solver = ka.AdjointSolver(model.problem, preconditioner="ilu", maxiter=300, rtol=1e-8)
    result = solver.gradient(model.theta)
    assert result.primal.method == result.adjoint_solve.method == "gmres"
    assert result.primal.converged and result.adjoint_solve.converged
    assert result.primal.iterations < 100


# -- G. every preconditioner specification through AdjointSolver -----------------------------
NG = 64
_OFF = sp.diags([-1.3, -0.7], [-1, 1], shape=(NG, NG), format="csr")  # zero diagonal


def assembled(theta: np.ndarray) -> sp.csr_matrix:
    """A(θ) = convection stencil + diag(2 + e^θ): nonsymmetric, diagonally dominant."""
    return (_OFF + sp.diags(2.0 + np.exp(theta))).tocsr()


def affine_problem(*, assemble=assembled) -> ka.AdjointProblem:
    op = ka.ParametricOperator(
        lambda th, x: _OFF @ x + (2.0 + np.exp(th)) * x, n=NG,
        rmatvec=lambda th, y: _OFF.T @ y + (2.0 + np.exp(th)) * y,
        vjp=lambda th, x, lam: lam * np.exp(th) * x, assemble=assemble)
    weights = np.linspace(1.0, 2.0, NG)
    return ka.AdjointProblem(op, np.ones(NG), ka.LinearFunctional(weights), n_params=NG)


THETA = np.sin(np.arange(NG))
A_REF = assembled(THETA)


def reference_gradient() -> np.ndarray:
    solver = ka.AdjointSolver(affine_problem(), preconditioner="none", rtol=1e-12)
    return solver.gradient(THETA).gradient


class MyPrecond:
    """The documented protocol only: shape, apply, apply_transpose (Jacobi)."""

    def __init__(self, A: sp.csr_matrix) -> None:
        self.shape = A.shape
        self.inverse_diagonal = 1.0 / A.diagonal()

    def apply(self, r):
        return self.inverse_diagonal * r

    apply_transpose = apply


def ilu_factory(A, drop_tol=1e-4):
    return ILUPreconditioner(A, drop_tol=drop_tol)


def _ilu_operator() -> spla.LinearOperator:
    M = ILUPreconditioner(A_REF)
    return spla.LinearOperator((NG, NG), matvec=M.apply, rmatvec=M.apply_transpose,
                               dtype=float)


ACCEPTED = [
    pytest.param(lambda: "auto", None, "amg", id="auto"),
    pytest.param(lambda: None, None, "none", id="None"),
    pytest.param(lambda: "none", None, "none", id="none"),
    pytest.param(lambda: "jacobi", None, "jacobi", id="jacobi"),
    pytest.param(lambda: "ilu", {"drop_tol": 1e-3}, "ilu", id="ilu-options"),
    pytest.param(lambda: "amg", None, "amg", id="amg"),
    pytest.param(lambda: "amg", {"method": "rs", "cycle": "W", "strength": "classical"}, "amg",
                 id="amg-rs-pyamg-option"),
    pytest.param(lambda: "amg", {"method": "air"}, "amg", id="amg-air"),
    pytest.param(lambda: ILUPreconditioner(A_REF), None, "ILUPreconditioner", id="ready-ilu"),
    pytest.param(lambda: MyPrecond(A_REF), None, "MyPrecond", id="protocol-object"),
    pytest.param(_ilu_operator, None, "LinearOperator", id="LinearOperator"),
    pytest.param(lambda: pyamg.ruge_stuben_solver(A_REF), None, "MultilevelSolver",
                 id="MultilevelSolver-rs"),
    pytest.param(lambda: pyamg.smoothed_aggregation_solver(A_REF, symmetry="nonsymmetric"),
                 None, "MultilevelSolver", id="MultilevelSolver-sa"),
    pytest.param(lambda: ilu_factory, {"drop_tol": 1e-3}, "ilu_factory", id="factory-options"),
    pytest.param(lambda: (lambda A: JacobiPreconditioner(A)), None, "<lambda>",
                 id="factory-lambda"),
    pytest.param(lambda: JacobiPreconditioner, None, "JacobiPreconditioner", id="class"),
]


@pytest.mark.parametrize(("make_spec", "options", "name"), ACCEPTED)
def test_accepted_specs_give_the_unpreconditioned_gradient(make_spec, options, name):
    solver = ka.AdjointSolver(affine_problem(), preconditioner=make_spec(),
                              preconditioner_options=options, rtol=1e-12)
    assert solver.backend.preconditioner_name == name
    result = solver.gradient(THETA)
    assert result.primal.converged and result.adjoint_solve.converged
    reference = reference_gradient()
    error = np.linalg.norm(result.gradient - reference) / np.linalg.norm(reference)
    assert error <= 1e-8
    assert result.primal.method == "gmres"


def test_a_pyamg_hierarchy_is_wrapped_with_its_exact_transposed_cycle():
    ml = pyamg.ruge_stuben_solver(A_REF)
    source = resolve_preconditioner(ml, None, n=NG, has_assembled=False)
    M = source.fixed
    assert isinstance(M, AMGPreconditioner) and M.hierarchy is ml
    r, s = np.random.default_rng(0).standard_normal((2, NG))
    np.testing.assert_allclose(M.apply(r), ml.aspreconditioner().matvec(r), rtol=1e-12)
    assert abs(M.apply(r) @ s - r @ M.apply_transpose(s)) <= 1e-12 * np.linalg.norm(
        M.apply(r)) * np.linalg.norm(s)
    with pytest.raises(ValueError, match="nothing to set up"):
        source.build(A_REF)


def test_ready_preconditioners_need_no_assemble_callback():
    problem = affine_problem(assemble=None)
    for spec in (MyPrecond(A_REF), _ilu_operator(), pyamg.ruge_stuben_solver(A_REF), None):
        solver = ka.AdjointSolver(problem, preconditioner=spec, rtol=1e-10)
        assert solver.gradient(THETA).adjoint_solve.converged


def _no_rmatvec() -> spla.LinearOperator:
    return spla.LinearOperator((NG, NG), matvec=ILUPreconditioner(A_REF).apply, dtype=float)


class OnlyApply:
    shape = (NG, NG)

    def apply(self, r):
        return r


REFUSED = [
    pytest.param(_no_rmatvec, None, "without rmatvec, but the adjoint solve needs Mᵀ",
                 id="LinearOperator-without-rmatvec"),
    pytest.param(lambda: sp.identity(NG, format="csr"), None,
                 "an assembled matrix is not a preconditioner", id="sparse-matrix"),
    pytest.param(lambda: sp.identity(NG), None, "an assembled matrix is not a preconditioner",
                 id="sparse-dia"),
    pytest.param(lambda: np.eye(NG), None, "an assembled matrix is not a preconditioner",
                 id="ndarray"),
    pytest.param(lambda: "amg", {"methd": "sa"},
                 r"unknown option 'methd' \(method='sa'\); accepted: method, cycle", id="amg-key"),
    pytest.param(lambda: "amg", {"method": "rs", "aggregate": "standard"},
                 r"unknown option 'aggregate' \(method='rs'\).*CF", id="amg-key-of-other-method"),
    pytest.param(lambda: "amg", {"method": "multigrid"}, "unknown method 'multigrid'",
                 id="amg-method"),
    pytest.param(lambda: "amg", {"B": np.ones((NG, 1))}, "near_nullspace", id="amg-B"),
    pytest.param(lambda: "ilu", {"droptol": 1e-3},
                 r"unknown option 'droptol' for preconditioner='ilu'; accepted: drop_tol, "
                 "fill_factor", id="ilu-key"),
    pytest.param(lambda: "jacobi", {"omega": 0.5}, "accepted: none", id="jacobi-key"),
    pytest.param(lambda: ilu_factory, {"drop": 1e-3},
                 "unknown option 'drop' for the preconditioner factory ilu_factory",
                 id="factory-key"),
    pytest.param(lambda: MyPrecond(A_REF), {"drop_tol": 1e-3}, "used as is",
                 id="options-with-ready-object"),
    pytest.param(lambda: pyamg.ruge_stuben_solver(A_REF), {"cycle": "W"}, "used as is",
                 id="options-with-hierarchy"),
    pytest.param(lambda: "none", {"drop_tol": 1e-3}, "used as is", id="options-with-none"),
    pytest.param(lambda: MyPrecond(sp.identity(NG + 1).tocsr()), None,
                 rf"expected shape \({NG}, {NG}\), got \({NG + 1}, {NG + 1}\)", id="shape"),
    pytest.param(OnlyApply, None, "no apply_transpose", id="apply-only"),
    pytest.param(lambda: "multigrid", None, "unknown preconditioner 'multigrid'",
                 id="unknown-name"),
    pytest.param(lambda: 42, None, "expected 'auto', 'amg'.*got int", id="int"),
    pytest.param(lambda: "ilu", [("drop_tol", 1e-3)], "expected a dict", id="options-list"),
    pytest.param(lambda: pyamg.smoothed_aggregation_solver(
        A_REF, symmetry="nonsymmetric", presmoother="jacobi", postsmoother="jacobi"), None,
        "does not reproduce this hierarchy's own V-cycle", id="hierarchy-other-smoothers"),
]


@pytest.mark.parametrize(("make_spec", "options", "match"), REFUSED)
def test_refused_specs_are_named_at_construction(make_spec, options, match):
    with pytest.raises(ValueError, match=match):
        ka.AdjointSolver(affine_problem(), preconditioner=make_spec(),
                         preconditioner_options=options)


@pytest.mark.parametrize("spec", ["amg", "ilu", "jacobi", ilu_factory])
def test_set_up_kinds_need_an_assemble_callback(spec):
    with pytest.raises(ValueError, match="no assemble callback: pass assemble="):
        ka.AdjointSolver(affine_problem(assemble=None), preconditioner=spec)


def test_auto_means_none_without_assemble_and_refuses_options_then():
    solver = ka.AdjointSolver(affine_problem(assemble=None), preconditioner="auto")
    assert solver.backend.preconditioner_name == "none"
    with pytest.raises(ValueError, match="'auto' means no preconditioner here"):
        ka.AdjointSolver(affine_problem(assemble=None), preconditioner="auto",
                         preconditioner_options={"cycle": "W"})


def test_a_factory_returning_junk_is_named():
    solver = ka.AdjointSolver(affine_problem(), preconditioner=lambda A: A)
    with pytest.raises(ka.CallbackError, match="<lambda>: the preconditioner factory returned "
                                               "csr_matrix"):
        solver.gradient(THETA)


def test_amg_on_a_zero_diagonal_names_the_row_at_set_up():
    problem = affine_problem(assemble=lambda th: _OFF)  # an "approximation" without diagonal
    solver = ka.AdjointSolver(problem, preconditioner="amg")
    with pytest.raises(ValueError, match=r"zero diagonal entry in row 0 \(64 in all\)"):
        solver.gradient(THETA)
    A = assembled(THETA).tolil()
    A[5, 5] = 0.0
    with pytest.raises(ValueError, match="zero diagonal entry in row 5"):
        AMGPreconditioner(A.tocsr())
    A[5, 5], A[7, 8] = 1.0, np.nan
    with pytest.raises(ValueError, match="non-finite .* the first in row 7"):
        AMGPreconditioner(A.tocsr())


def test_make_preconditioner_goes_through_the_resolver():
    from krylov_adjoint.precond import make_preconditioner

    assert type(make_preconditioner("auto", A_REF)).__name__ == "AMGPreconditioner"
    ready = MyPrecond(A_REF)
    assert make_preconditioner(ready, A_REF) is ready
    with pytest.raises(ValueError, match="unknown option 'droptol'"):
        make_preconditioner("ilu", A_REF, droptol=1e-3)
    source = resolve_preconditioner("ilu", {"drop_tol": 1e-3}, n=NG, has_assembled=True)
    assert isinstance(source, PreconditionerSource) and source.fixed is None
    assert source.build(A_REF).shape == (NG, NG)

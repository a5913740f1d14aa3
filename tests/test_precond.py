"""Built-in preconditioners: exact transposes (dot tests) and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from krylov_adjoint.precond import (
    IdentityPreconditioner,
    ILUPreconditioner,
    JacobiPreconditioner,
    make_preconditioner,
)
from krylov_adjoint.verify import preconditioner_dot_test

N = 60


def nonsymmetric() -> sp.csr_matrix:
    rng = np.random.default_rng(3)
    R = sp.random(N, N, density=0.08, random_state=rng, format="csr")
    return (R + sp.diags(4.0 + rng.random(N))).tocsr()


def dot_error(M, rng: np.random.Generator) -> float:
    """The normalised dot-test error of ``M.apply_transpose`` against ``M.apply``, one pair."""
    return preconditioner_dot_test(M, rng=rng, trials=1).error


@pytest.mark.parametrize("kind", ["jacobi", "ilu", "none"])
def test_dot_test_of_builtin_preconditioners(kind):
    M = make_preconditioner(kind, nonsymmetric())
    rng = np.random.default_rng(0)
    assert max(dot_error(M, rng) for _ in range(5)) < 1e-12


def test_dot_test_detects_a_wrong_transpose():
    M = ILUPreconditioner(nonsymmetric(), drop_tol=0.0)

    class Wrong:
        shape = M.shape
        apply = M.apply
        apply_transpose = M.apply

    assert dot_error(Wrong(), np.random.default_rng(0)) > 1e-3


def test_ilu_transpose_solves_the_transposed_system_exactly_without_dropping():
    A = nonsymmetric()
    M = ILUPreconditioner(A, drop_tol=0.0, fill_factor=50)
    b = np.arange(1.0, N + 1)
    np.testing.assert_allclose(A.T @ M.apply_transpose(b), b, rtol=1e-10)
    np.testing.assert_allclose(M.T.apply(b), M.apply_transpose(b))


def test_transposed_view_swaps_and_round_trips():
    M = JacobiPreconditioner(nonsymmetric())
    assert M.T.T is M
    op = M.aslinearoperator()
    np.testing.assert_allclose(op.rmatvec(np.ones(N)), M.apply_transpose(np.ones(N)))


def test_identity_returns_a_copy():
    r = np.ones(3)
    out = IdentityPreconditioner(3).apply(r)
    out[0] = 5.0
    assert r[0] == 1.0


def test_jacobi_names_a_zero_diagonal():
    with pytest.raises(ValueError, match="zero diagonal entry at row 1"):
        JacobiPreconditioner(sp.diags([1.0, 0.0, 2.0]))


def test_unknown_preconditioner_lists_the_choices():
    with pytest.raises(ValueError, match="'jacobi'"):
        make_preconditioner("multigrid", sp.identity(3))


# -- AMG: options checked before set-up, matrices it cannot use, hierarchies built elsewhere --
def test_amg_refuses_unknown_options_listing_those_of_the_method():
    from krylov_adjoint.precond import AMGPreconditioner

    A = nonsymmetric()
    with pytest.raises(ValueError, match=r"unknown option 'methd' \(method='sa'\); accepted: "
                                         r"method, cycle, .*aggregate"):
        AMGPreconditioner(A, methd="sa")
    with pytest.raises(ValueError, match=r"unknown option 'aggregate' \(method='rs'\)"):
        AMGPreconditioner(A, method="rs", aggregate="standard")
    with pytest.raises(ValueError, match="near_nullspace"):
        AMGPreconditioner.check_options({"B": np.ones((N, 1))})
    AMGPreconditioner.check_options({"method": "rs", "CF": "RS", "cycle": "W"})


def test_amg_names_the_row_of_a_zero_diagonal_or_a_non_finite_entry():
    from krylov_adjoint.precond import AMGPreconditioner

    A = nonsymmetric().tolil()
    A[4, 4] = 0.0
    with pytest.raises(ValueError, match=r"zero diagonal entry in row 4 \(1 in all\)"):
        AMGPreconditioner(A.tocsr())
    A[4, 4], A[9, 2] = 1.0, np.inf
    with pytest.raises(ValueError, match="the first in row 9"):
        AMGPreconditioner(A.tocsr())


@pytest.mark.parametrize("cycle", ["V", "W", "F"])
def test_amg_from_a_pyamg_hierarchy_is_its_cycle_with_an_exact_transpose(cycle):
    import pyamg

    from krylov_adjoint.precond import AMGPreconditioner

    ml = pyamg.ruge_stuben_solver(nonsymmetric())
    M = AMGPreconditioner.from_hierarchy(ml, cycle=cycle)
    assert M.hierarchy is ml and M.method == "hierarchy"
    r = np.random.default_rng(1).standard_normal(N)
    np.testing.assert_allclose(M.apply(r), ml.aspreconditioner(cycle).matvec(r), rtol=1e-12)
    assert dot_error(M, np.random.default_rng(2)) < 1e-12
    assert M.is_symmetric is False


def test_amg_from_a_hierarchy_with_other_smoothers_needs_them_named():
    import pyamg

    from krylov_adjoint.precond import AMGPreconditioner

    A = nonsymmetric()
    ml = pyamg.smoothed_aggregation_solver(A, symmetry="nonsymmetric", presmoother="jacobi",
                                           postsmoother="jacobi", max_coarse=10)
    with pytest.raises(ValueError, match="does not reproduce this hierarchy's own V-cycle"):
        AMGPreconditioner.from_hierarchy(ml)
    M = AMGPreconditioner.from_hierarchy(ml, presmoother="jacobi", postsmoother="jacobi")
    assert dot_error(M, np.random.default_rng(0)) < 1e-12
    with pytest.raises(TypeError, match="expected a pyamg MultilevelSolver"):
        AMGPreconditioner.from_hierarchy(A)


def test_linear_operator_preconditioner_needs_rmatvec():
    import scipy.sparse.linalg as spla

    from krylov_adjoint.precond import LinearOperatorPreconditioner

    M = ILUPreconditioner(nonsymmetric())
    op = spla.LinearOperator((N, N), matvec=M.apply, rmatvec=M.apply_transpose, dtype=float)
    wrapped = LinearOperatorPreconditioner(op)
    assert wrapped.is_symmetric is None and dot_error(wrapped, np.random.default_rng(0)) < 1e-12
    with pytest.raises(ValueError, match="made without rmatvec, but the adjoint solve needs"):
        LinearOperatorPreconditioner(spla.LinearOperator((N, N), matvec=M.apply, dtype=float))
    assert LinearOperatorPreconditioner(spla.aslinearoperator(sp.identity(N))).shape == (N, N)

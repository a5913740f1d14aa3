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

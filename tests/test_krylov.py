"""Krylov methods: stopping rule, reasons, breakdowns, monitor, NaN blame."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from krylov_adjoint import ConvergenceError, ConvergenceReason, NonFiniteError
from krylov_adjoint.krylov import solve
from krylov_adjoint.precond import AMGPreconditioner, ILUPreconditioner, JacobiPreconditioner

N = 120


def nonsymmetric(n: int = N) -> sp.csr_matrix:
    return sp.diags([-1.4, 3.0, -0.6], [-1, 0, 1], shape=(n, n), format="csr")


def spd(n: int = N) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.05, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


CASES = [
    pytest.param("gmres", nonsymmetric, None, id="gmres-none"),
    pytest.param("gmres", nonsymmetric, "jacobi", id="gmres-jacobi"),
    pytest.param("gmres", nonsymmetric, "ilu", id="gmres-ilu"),
    pytest.param("bicgstab", nonsymmetric, None, id="bicgstab-none"),
    pytest.param("bicgstab", nonsymmetric, "ilu", id="bicgstab-ilu"),
    pytest.param("cg", spd, None, id="cg-none"),
    pytest.param("cg", spd, "jacobi", id="cg-jacobi"),
]


def make_precond(kind: str | None, A: sp.csr_matrix):
    if kind == "jacobi":
        return JacobiPreconditioner(A)
    if kind == "ilu":
        return ILUPreconditioner(A, drop_tol=1e-2)
    return None


@pytest.mark.parametrize(("method", "matrix", "precond"), CASES)
@pytest.mark.parametrize("transpose", [False, True], ids=["A", "AT"])
def test_solution_matches_direct_solve_and_meets_the_true_residual_rule(
        method, matrix, precond, transpose):
    A = matrix()
    M = make_precond(precond, A)
    if transpose:
        A, M = A.T.tocsr(), (None if M is None else M.T)
    b = np.random.default_rng(1).standard_normal(N)
    result = solve(A, b, method=method, M=M, rtol=1e-10)
    assert result.reason is ConvergenceReason.CONVERGED_RTOL
    true_residual = np.linalg.norm(b - A @ result.x)
    assert true_residual <= 1e-10 * np.linalg.norm(b)
    assert result.residual_norm == pytest.approx(true_residual, rel=1e-6)
    assert len(result.residual_norms) == result.iterations + 1
    reference = np.linalg.solve(A.toarray(), b)
    np.testing.assert_allclose(result.x, reference, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["gmres", "bicgstab", "cg"])
def test_atol_governs_when_larger_than_rtol_times_norm_b(method):
    A = spd()
    b = np.ones(N)
    result = solve(A, b, method=method, rtol=1e-14, atol=1e-3)
    assert result.reason is ConvergenceReason.CONVERGED_ATOL
    assert result.target == 1e-3
    assert np.linalg.norm(b - A @ result.x) <= 1e-3


@pytest.mark.parametrize("method", ["gmres", "bicgstab", "cg"])
def test_maxiter_reports_reason_and_raises_on_request(method):
    A, b = spd(), np.ones(N)
    result = solve(A, b, method=method, rtol=1e-12, maxiter=3)
    assert result.reason is ConvergenceReason.DIVERGED_MAXITER
    assert not result.converged and result.iterations == 3
    with pytest.raises(ConvergenceError) as info:
        solve(A, b, method=method, rtol=1e-12, maxiter=3, raise_on_failure=True)
    assert info.value.result.reason is ConvergenceReason.DIVERGED_MAXITER
    assert "DIVERGED_MAXITER" in str(info.value)


@pytest.mark.parametrize("method", ["gmres", "bicgstab", "cg"])
def test_zero_rhs_gives_zero_without_iterating(method):
    result = solve(spd(), np.zeros(N), method=method, x0=np.ones(N))
    assert result.reason is ConvergenceReason.CONVERGED_ZERO_RHS
    assert result.iterations == 0 and not result.x.any()


def test_cg_reports_an_indefinite_operator():
    result = solve(-spd(), np.ones(N), method="cg")
    assert result.reason is ConvergenceReason.DIVERGED_INDEFINITE_MATRIX
    assert "not positive definite" in result.message


def test_gmres_breakdown_on_a_singular_inconsistent_system():
    A = sp.diags([1.0, 1.0, 0.0], 0, format="csr")
    result = solve(A, np.array([1.0, 1.0, 1.0]), method="gmres")
    assert result.reason is ConvergenceReason.DIVERGED_BREAKDOWN


def test_monitor_sees_every_iteration_with_phase():
    calls = []
    result = solve(spd(), np.ones(N), method="cg", rtol=1e-8, phase="primal",
                   monitor=lambda phase, it, rnorm: calls.append((phase, it, rnorm)))
    assert [c[1] for c in calls] == list(range(result.iterations + 1))
    assert {c[0] for c in calls} == {"primal"}


def test_initial_guess_is_not_modified_and_is_used():
    A, b = spd(), np.ones(N)
    exact = np.linalg.solve(A.toarray(), b)
    x0 = exact.copy()
    result = solve(A, b, method="cg", x0=x0, rtol=1e-8)
    assert result.iterations == 0
    np.testing.assert_array_equal(x0, exact)


class NaNPreconditioner:
    shape = (N, N)

    def apply(self, r):
        out = r.copy()
        out[3] = np.nan
        return out

    apply_transpose = apply


@pytest.mark.parametrize("method", ["gmres", "bicgstab", "cg"])
def test_nan_from_the_preconditioner_is_blamed_on_it(method):
    with pytest.raises(NonFiniteError, match="preconditioner.apply"):
        solve(spd(), np.ones(N), method=method, M=NaNPreconditioner(),
              labels=("operator.matvec", "preconditioner.apply"))


def test_nan_from_the_operator_is_blamed_on_it():
    from scipy.sparse.linalg import LinearOperator

    def matvec(v):
        out = spd() @ v
        out[0] = np.inf
        return out

    A = LinearOperator((N, N), matvec=matvec, dtype=float)
    with pytest.raises(NonFiniteError, match="operator.matvec"):
        solve(A, np.ones(N), method="gmres", labels=("operator.matvec", "M"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rtol": -1.0}, "rtol"),
    ({"rtol": 0.0, "atol": 0.0}, "both 0"),
    ({"maxiter": 0}, "maxiter"),
    ({"method": "minres"}, "method"),
    ({"restart": 0}, "restart"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve(spd(), np.ones(N), **kwargs)


def test_wrong_rhs_length_is_named():
    with pytest.raises(ValueError, match="b: expected shape"):
        solve(spd(), np.ones(N + 1))


@pytest.mark.parametrize("method", ["gmres", "bicgstab", "cg"])
def test_a_tolerance_below_attainable_accuracy_stops_on_stagnation_not_maxiter(method):
    n = 400
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n)) * 1e6
    A = (T + sp.diags(np.linspace(1.0, 1e3, n))).tocsr()
    # CG needs a symmetric preconditioner: ILU is not one, a symmetric AMG V-cycle is.
    M = AMGPreconditioner(A) if method == "cg" else ILUPreconditioner(A, drop_tol=1e-3)
    b = np.ones(n)
    result = solve(A, b, method=method, M=M, rtol=1e-18, maxiter=5000)
    assert result.reason is ConvergenceReason.DIVERGED_STAGNATION
    assert result.iterations < 500
    assert "attainable" in result.message
    assert np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b)


def test_gmres_basis_grows_on_demand_and_keeps_its_rows(monkeypatch):
    from krylov_adjoint.krylov import _basis

    monkeypatch.setattr(_basis, "ALLOCATE_AT_ONCE", 0)
    rows = _basis.Rows(21, 3)
    np.copyto(rows.slot(0), 0.0)
    assert rows.allocated == 8  # not restart + 1 vectors up front
    for i in range(21):
        np.copyto(rows.slot(i), float(i))
    assert rows.allocated == 21 and [len(b) for b in rows.blocks] == [8, 8, 5]
    np.testing.assert_array_equal(np.concatenate(rows.blocks)[:, 0], np.arange(21.0))
    coefficients = np.arange(1.0, 22.0)
    np.testing.assert_array_equal(rows.dot(21, np.ones(3)), 3 * np.arange(21.0))
    expected = np.ones(3) - coefficients @ np.concatenate(rows.blocks)
    np.testing.assert_allclose(rows.subtract_combination(21, coefficients, np.ones(3)), expected)
    x = np.ones(3)
    rows.add_combination(21, coefficients, x)
    np.testing.assert_allclose(x, 2.0 - expected)
    assert not rows.row(4).flags.writeable and rows.row(4)[0] == 4.0

"""Regression tests of the Krylov layer: argument validation, scaling, callbacks that return
read-only or bad arrays, mutating preconditioners, singular systems, GMRES memory."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint.krylov import ConvergenceReason, solve, stopping
from krylov_adjoint.krylov.stopping import validate_tolerances

N = 80


def spd(n: int = N) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.05, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def nonsymmetric(n: int = N) -> sp.csr_matrix:
    return sp.diags([-1.4, 3.0, -0.6], [-1, 0, 1], shape=(n, n), format="csr")


def diagonal_problem(n: int = 5) -> ka.AdjointProblem:
    """A(θ) = diag(θ), b = 1, J = sum(x): dJ/dθ = −1/θ²."""
    op = ka.ParametricOperator(lambda th, x: th * x, n=n, structure="spd",
                               vjp=lambda th, x, lam: lam * x)
    return ka.AdjointProblem(op, np.ones(n), ka.LinearFunctional(np.ones(n)), n_params=n)


# -- A. tolerances, maxiter and restart -----------------------------------------------------
@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
@pytest.mark.parametrize("rtol", [1.0, 2.0, np.float64(1.0)])
def test_rtol_of_one_or_more_is_refused_instead_of_returning_zero(method, rtol):
    with pytest.raises(ValueError, match=r"rtol must be < 1.*x = 0 without iterating"):
        solve(spd(), np.ones(N), method=method, rtol=rtol)


@pytest.mark.parametrize("kwargs", [{"rtol": 1.0}, {"adjoint_rtol": 1.5}])
def test_adjoint_solver_refuses_an_rtol_of_one_or_more(kwargs):
    with pytest.raises(ValueError, match="rtol must be < 1"):
        ka.AdjointSolver(diagonal_problem(), **kwargs)


@pytest.mark.parametrize("rtol", [np.float32(1e-8), np.float64(1e-8), np.longdouble(1e-8)])
@pytest.mark.parametrize("atol", [0, np.int64(0), np.float32(0.0)])
def test_numpy_scalar_tolerances_are_accepted(rtol, atol):
    b = np.ones(N)
    result = solve(spd(), b, method="cg", rtol=rtol, atol=atol)
    assert result.converged
    assert type(result.target) is float
    assert result.target == pytest.approx(float(rtol) * np.linalg.norm(b), rel=1e-12)
    assert np.linalg.norm(b - spd() @ result.x) <= result.target


@pytest.mark.parametrize("bad", [True, np.bool_(True), 1e-8 + 0j, np.complex128(1e-8), "1e-8",
                                 np.array([1e-8]), None, float("nan"), -1e-8])
def test_non_real_or_negative_tolerances_are_refused(bad):
    with pytest.raises(ValueError, match="rtol must be a finite real number"):
        validate_tolerances(bad, 0.0, None, 10)
    with pytest.raises(ValueError, match="atol must be a finite real number"):
        validate_tolerances(1e-8, bad, None, 10)


@pytest.mark.parametrize("bad", [2.5, True, np.bool_(True), 0, -3, float("inf"), "10"])
def test_maxiter_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="maxiter must be a positive integer"):
        solve(spd(), np.ones(N), maxiter=bad)


@pytest.mark.parametrize(("good", "expected"), [(7, 7), (np.int64(7), 7), (1e3, 1000)])
def test_maxiter_accepts_whole_numbers(good, expected):
    assert validate_tolerances(1e-8, 0.0, good, 10) == expected


@pytest.mark.parametrize("bad", [2.5, True, np.bool_(False), 0, -1, float("nan"), "30", None])
def test_restart_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="restart must be a positive integer"):
        stopping.validate_restart(bad)
    with pytest.raises(ValueError, match="restart must be a positive integer"):
        solve(nonsymmetric(), np.ones(N), method="gmres", restart=bad)


@pytest.mark.parametrize(("good", "expected"), [(30, 30), (np.int32(5), 5), (20.0, 20)])
def test_restart_accepts_whole_numbers(good, expected):
    assert stopping.validate_restart(good) == expected
    assert type(stopping.validate_restart(good)) is int


# -- B. tiny and huge systems -----------------------------------------------------------------
SCALES = [pytest.param(1e-170, id="1e-170"), pytest.param(1e-300, id="1e-300"),
          pytest.param(1e200, id="1e200")]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_a_tiny_or_huge_system_is_solved_not_taken_for_a_zero_rhs(method, scale):
    A = spd() if method == "cg" else nonsymmetric()
    reference = np.linalg.solve(A.toarray(), np.ones(N))
    seen = []
    result = solve(scale * A, np.full(N, scale), method=method, rtol=1e-10,
                   monitor=lambda phase, it, rnorm: seen.append(rnorm))
    assert result.reason is ConvergenceReason.CONVERGED_RTOL
    assert result.iterations > 0
    np.testing.assert_allclose(result.x, reference, rtol=1e-8)
    # norms are reported in the units of the system given, not of an internal scaling
    assert result.rhs_norm == pytest.approx(scale * np.sqrt(N), rel=1e-12)
    assert result.residual_norms[0] == pytest.approx(result.rhs_norm, rel=1e-12)
    assert result.target == pytest.approx(1e-10 * scale * np.sqrt(N), rel=1e-12)
    assert seen[0] == result.residual_norms[0] and len(seen) == result.iterations + 1
    assert max(seen) <= 10 * result.rhs_norm
    true = np.linalg.norm((result.x - reference) @ A.T) * scale  # ‖b − A x‖ without underflow
    assert true <= 1e-9 * result.rhs_norm


@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_a_tiny_system_uses_its_initial_guess(method):
    A = 1e-170 * spd()
    b = np.full(N, 1e-170)
    exact = np.linalg.solve(spd().toarray(), np.ones(N))
    result = solve(A, b, method=method, x0=exact, rtol=1e-8)
    assert result.iterations == 0 and result.converged
    np.testing.assert_allclose(result.x, exact, rtol=1e-12)


def test_a_single_tiny_entry_is_not_a_zero_rhs():
    b = np.zeros(N)
    b[3] = 1e-200
    result = solve(spd(), b, method="cg", rtol=1e-10)
    assert result.reason is ConvergenceReason.CONVERGED_RTOL
    np.testing.assert_allclose(result.x * 1e200, np.linalg.solve(spd().toarray(), b * 1e200),
                               rtol=1e-8)


def test_robust_norm_neither_underflows_nor_overflows():
    from krylov_adjoint.krylov._norm import norm

    assert norm(np.full(4, 1e-170)) == pytest.approx(2e-170, rel=1e-15)
    assert norm(np.full(4, 1e200)) == pytest.approx(2e200, rel=1e-15)
    assert norm(np.zeros(3)) == 0.0
    assert norm(np.array([3.0, 4.0])) == 5.0
    assert np.isnan(norm(np.array([np.nan, 1e-200])))
    assert norm(np.array([np.inf, 1.0])) == np.inf


# -- C. callback outputs are never written to -------------------------------------------------
def _frozen(y: np.ndarray) -> np.ndarray:
    y = np.array(y, dtype=float)
    y.flags.writeable = False
    return y


class FrozenOutputPreconditioner:
    """Jacobi, returning read-only arrays."""

    def __init__(self, A: sp.csr_matrix) -> None:
        self.shape = A.shape
        self.inverse_diagonal = 1.0 / A.diagonal()

    def apply(self, r: np.ndarray) -> np.ndarray:
        return _frozen(self.inverse_diagonal * r)

    apply_transpose = apply


@pytest.mark.parametrize("preconditioned", [False, True], ids=["M=None", "M-read-only"])
@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_read_only_outputs_of_the_operator_and_preconditioner_are_not_written(
        method, preconditioned):
    from scipy.sparse.linalg import LinearOperator

    A = spd() if method == "cg" else nonsymmetric()
    op = LinearOperator(A.shape, matvec=lambda v: _frozen(A @ v), dtype=float)
    M = FrozenOutputPreconditioner(A) if preconditioned else None
    b = np.random.default_rng(2).standard_normal(N)
    result = solve(op, b, method=method, M=M, rtol=1e-10)
    assert result.reason is ConvergenceReason.CONVERGED_RTOL
    np.testing.assert_allclose(result.x, np.linalg.solve(A.toarray(), b), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_an_operator_output_it_keeps_is_left_intact(method):
    """An operator may return an array it holds (here: the last product, kept for reuse)."""
    from scipy.sparse.linalg import LinearOperator

    A = spd() if method == "cg" else nonsymmetric()
    kept: list[tuple[np.ndarray, np.ndarray]] = []

    def matvec(v: np.ndarray) -> np.ndarray:
        y = A @ v
        kept.append((np.array(v, copy=True), y))
        return y

    result = solve(LinearOperator(A.shape, matvec=matvec, dtype=float), np.ones(N),
                   method=method, rtol=1e-10)
    assert result.converged
    for v, y in kept:
        np.testing.assert_array_equal(y, A @ v)


# -- D. preconditioners and operators get read-only inputs; their outputs are checked ---------
LABELS = ("operator.matvec", "preconditioner.apply")


class MutatingJacobi:
    """Jacobi that scales its input in place: it used to corrupt the recurrence silently."""

    def __init__(self, A: sp.csr_matrix, how: str = "ufunc", where: str = "apply") -> None:
        self.shape = A.shape
        self.inverse_diagonal = 1.0 / A.diagonal()
        self.how, self.where = how, where

    def _mutate(self, r: np.ndarray) -> np.ndarray:
        if self.how == "ufunc":
            r *= self.inverse_diagonal
        else:
            r[:] = self.inverse_diagonal * r
        return r

    def apply(self, r: np.ndarray) -> np.ndarray:
        return self._mutate(r) if self.where == "apply" else self.inverse_diagonal * r

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        return self._mutate(r) if self.where == "apply_transpose" else self.inverse_diagonal * r


@pytest.mark.parametrize("how", ["ufunc", "assignment"])
@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_a_preconditioner_modifying_its_input_is_named(method, how):
    A = spd() if method == "cg" else nonsymmetric()
    with pytest.raises(ka.CallbackError,
                       match=r"preconditioner.apply: must not modify its input.*new array"):
        solve(A, np.ones(N), method=method, M=MutatingJacobi(A, how), rtol=1e-10,
              labels=LABELS)


@pytest.mark.parametrize("where", ["apply", "apply_transpose"])
def test_adjoint_solver_names_the_preconditioner_that_modifies_its_input(where):
    problem = diagonal_problem(N)
    M = MutatingJacobi(sp.diags(np.linspace(1.0, 2.0, N)).tocsr(), where=where)
    solver = ka.AdjointSolver(problem, preconditioner=M, method="gmres")
    with pytest.raises(ka.CallbackError, match=rf"preconditioner\.{where}: must not modify"):
        solver.gradient(np.linspace(1.0, 2.0, N))


class BadOutput:
    def __init__(self, make) -> None:
        self.shape = (N, N)
        self.make = make

    def apply(self, r: np.ndarray):
        return self.make(r)

    apply_transpose = apply


BAD_OUTPUTS = [
    pytest.param(lambda r: None, "returned None", id="None"),
    pytest.param(lambda r: list(r), "returned list", id="list"),
    pytest.param(lambda r: r.reshape(-1, 1), r"shape \(80, 1\).*1-D", id="column"),
    pytest.param(lambda r: r[:-1], r"shape \(79,\)", id="short"),
    pytest.param(lambda r: r.astype(np.float32), "dtype float32", id="float32"),
    pytest.param(lambda r: np.arange(N), "dtype int64", id="int64"),
    pytest.param(lambda r: r + 0j, "complex", id="complex"),
]


@pytest.mark.parametrize(("make", "match"), BAD_OUTPUTS)
@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_a_bad_preconditioner_output_is_blamed_on_the_preconditioner(method, make, match):
    with pytest.raises(ka.CallbackError, match=match) as info:
        solve(spd(), np.ones(N), method=method, M=BadOutput(make), labels=LABELS)
    assert info.value.callback == "preconditioner.apply"


# scipy's LinearOperator.matvec itself turns lists and columns into vectors and raises on
# other shapes: the library names the operator in that error.
BAD_OPERATOR_OUTPUTS = [
    pytest.param(lambda r: None, "raised ValueError: cannot reshape", id="None"),
    pytest.param(lambda r: r[:-1], "raised ValueError: cannot reshape", id="short"),
    *(case for case in BAD_OUTPUTS if case.id in ("float32", "int64", "complex")),
]


@pytest.mark.parametrize(("make", "match"), BAD_OPERATOR_OUTPUTS)
@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_a_bad_operator_output_is_blamed_on_the_operator(method, make, match):
    from scipy.sparse.linalg import LinearOperator

    class Op(LinearOperator):
        def __init__(self) -> None:
            super().__init__(np.float64, (N, N))

        def _matvec(self, x):
            return make(spd() @ x)

    with pytest.raises(ka.CallbackError, match=match) as info:
        solve(Op(), np.ones(N), method=method, x0=np.ones(N), labels=LABELS)
    assert info.value.callback == "operator.matvec"


def test_an_exception_in_a_callback_is_chained_and_named():
    class Failing(BadOutput):
        def apply_transpose(self, r):
            raise NotImplementedError("no transpose")

    M = Failing(lambda r: r / 2.05)
    with pytest.raises(ka.CallbackError, match="preconditioner.apply_transpose: raised "
                                               "NotImplementedError: no transpose") as info:
        solve(spd(), np.ones(N), M=_Swapped(M),
              labels=("operator.rmatvec", "preconditioner.apply_transpose"))
    assert isinstance(info.value.__cause__, NotImplementedError)


class _Swapped:
    def __init__(self, inner) -> None:
        self.shape, self.apply = inner.shape, inner.apply_transpose


def test_an_operator_modifying_its_input_is_named():
    from scipy.sparse.linalg import LinearOperator

    def matvec(x):
        x *= 2.0
        return spd() @ x

    with pytest.raises(ka.CallbackError, match="operator.matvec: must not modify its input"):
        solve(LinearOperator((N, N), matvec=matvec, dtype=float), np.ones(N), labels=LABELS)


def test_a_good_preconditioner_subclass_output_is_accepted():
    class Sub(np.ndarray):
        pass

    M = BadOutput(lambda r: (r / 2.05).view(Sub))
    assert solve(spd(), np.ones(N), method="cg", M=M, rtol=1e-10).converged


def test_a_complex_matrix_makes_a_complex_solve():
    A = spd() * (1 + 1j)
    result = solve(A, np.ones(N), rtol=1e-10)
    assert result.converged and result.x.dtype == np.complex128
    assert np.linalg.norm(A @ result.x - 1) <= 1e-10 * np.sqrt(N)


# -- F. a singular system with an inconsistent right-hand side gets a hint ---------------------
def neumann_laplacian(n: int = 100) -> sp.csr_matrix:
    """The 1-D Laplacian with Neumann ends: singular, its nullspace the constants."""
    A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="lil")
    A[0, 0] = A[-1, -1] = 1.0
    return A.tocsr()


SINGULAR_HINT = (r"A may be singular with an inconsistent right-hand side.*subtract the mean "
                 r"of b")


@pytest.mark.parametrize("jacobi", [False, True], ids=["M=None", "jacobi"])
@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_an_inconsistent_singular_system_ends_with_the_hint(method, jacobi):
    from krylov_adjoint.precond import JacobiPreconditioner

    A = neumann_laplacian()
    b = np.linspace(0.0, 1.0, A.shape[0]) + 0.3  # not orthogonal to the constants
    M = JacobiPreconditioner(A) if jacobi else None
    result = solve(A, b, method=method, M=M, rtol=1e-8)
    assert not result.converged
    assert result.message.count("may be singular") == 1
    assert re.search(SINGULAR_HINT, result.message), result.message
    consistent = solve(A, b - b.mean(), method=method, M=M, rtol=1e-8)
    assert consistent.converged and "singular" not in consistent.message


def test_gmres_breakdown_gives_the_same_hint():
    A = sp.diags([1.0, 1.0, 0.0], 0, format="csr")
    result = solve(A, np.array([1.0, 1.0, 1.0]), method="gmres")
    assert result.reason is ConvergenceReason.DIVERGED_BREAKDOWN
    assert "invariant" in result.message
    assert result.message.count("may be singular") == 1
    assert "subtract the mean of b" in result.message


@pytest.mark.parametrize("method", ["gmres", "cg", "bicgstab"])
def test_slow_steady_progress_and_attainable_accuracy_get_no_singular_hint(method):
    A = spd(400)
    result = solve(A, np.ones(400), method=method, rtol=1e-12, maxiter=60)
    assert result.reason is ConvergenceReason.DIVERGED_MAXITER
    assert "singular" not in result.message
    # a tolerance below the attainable accuracy stalls near rounding, not far above it
    n = 400
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n)) * 1e6
    A = (T + sp.diags(np.linspace(1.0, 1e3, n))).tocsr()
    stalled = solve(A, np.ones(n), method=method, rtol=1e-18, maxiter=3000)
    assert not stalled.converged and "singular" not in stalled.message


# -- H. GMRES memory --------------------------------------------------------------------------
def _gmres_peak_vectors(n: int, restart: int, matrix: sp.csr_matrix, maxiter: int
                        ) -> tuple[float, object]:
    import tracemalloc

    b = np.ones(n)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = solve(matrix, b, method="gmres", restart=restart, rtol=1e-12,
                       maxiter=maxiter)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / (8 * n), result


@pytest.mark.parametrize("in_blocks", [False, True], ids=["one-block", "blocks"])
def test_gmres_peak_memory_is_the_two_bases_and_a_few_vectors(monkeypatch, in_blocks):
    from krylov_adjoint.krylov import _basis

    if in_blocks:  # the storage of large problems, exercised at a moderate N
        monkeypatch.setattr(_basis, "ALLOCATE_AT_ONCE", 0)
    n, restart = 10_000, 30
    A = sp.diags([-1.4, 2.02, -0.6], [-1, 0, 1], shape=(n, n), format="csr")
    peak, result = _gmres_peak_vectors(n, restart, A, maxiter=70)
    assert result.iterations == 70  # more than two restart cycles
    # restart + 1 Arnoldi vectors, restart preconditioned ones, x and a few work vectors
    # (the former storage grown by doubling peaked at 97 vectors)
    assert peak <= 2 * restart + 1 + 7


def test_gmres_converging_early_allocates_only_the_blocks_it_reaches(monkeypatch):
    from krylov_adjoint.krylov import _basis

    monkeypatch.setattr(_basis, "ALLOCATE_AT_ONCE", 0)
    n = 10_000
    A = sp.diags([-1.4, 40.0, -0.6], [-1, 0, 1], shape=(n, n), format="csr")
    peak, result = _gmres_peak_vectors(n, 30, A, maxiter=100)
    assert result.converged and result.iterations <= 8
    assert peak <= 2 * 8 + 7

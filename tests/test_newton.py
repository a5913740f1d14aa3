"""Inexact Newton–CG (krylov_adjoint.newton) on small dense problems with exact derivatives.

The solvers' Hessian actions are reached through a small protocol (``gradient``,
``objective``, ``hessian_vector_product``, ``gauss_newton_vector_product``), so the optimiser
is tested here against dense fakes whose derivatives are exact:

* :class:`DenseLeastSquares` — ``J(θ) = ½‖O x(θ) − d‖² + ½ θᵀRθ`` with
  ``A(θ) x = b``, ``A(θ) = A₀ + diag(e^θ)``, by ``numpy.linalg.solve``;
* :class:`DoubleWell` — a non-convex J whose Hessian is indefinite near 0.

The last test runs on the real :class:`~krylov_adjoint.AdjointSolver` once it has Hessian
actions.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.optimize

import krylov_adjoint as ka
from krylov_adjoint.newton import (
    ConstantForcing,
    EisenstatWalker,
    NewtonIteration,
    newton_cg,
    scipy_hessp,
    steihaug_cg,
)


# -- fakes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeGradient:
    objective: float
    gradient: np.ndarray


@dataclass(frozen=True)
class FakeProduct:
    product: np.ndarray


def difference_matrix(n: int) -> np.ndarray:
    """The (n−1, n) forward difference."""
    return np.eye(n, k=1)[:-1] - np.eye(n)[:-1]


class DenseLeastSquares:
    """``J(θ) = ½‖O x(θ) − d‖² + ½ θᵀRθ``, ``(A₀ + diag(e^θ)) x = b``, all dense and exact.

    With ``J_x = ∂x/∂θ = −A⁻¹ diag(e^θ ∘ x)`` and ``w = A⁻ᵀOᵀ(O x − d)``:
    gradient ``J_xᵀOᵀr + Rθ``; Gauss–Newton ``J_xᵀOᵀO J_x + R``; full Hessian adds
    ``−(D J_x + (D J_x)ᵀ + diag(D x))`` with ``D = diag(w ∘ e^θ)`` (differentiate
    ``A x = b`` twice).
    """

    def __init__(self, n: int = 12, *, R: np.ndarray | None = None, alpha: float = 1e-2,
                 observe: np.ndarray | None = None, noise: float = 0.05, seed: int = 0,
                 flip_gradient: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.n = n
        self.A0 = (np.diag(np.full(n, 2.0)) - np.eye(n, k=1) - np.eye(n, k=-1)) * 0.5
        self.b = 1.0 + rng.random(n)
        self.O = np.eye(n) if observe is None else np.eye(n)[observe]
        self.R = alpha * np.eye(n) if R is None else R
        theta_true = np.sin(np.linspace(0, 3, n))
        self.d = self.O @ self.state(theta_true)[0] * (1 + noise * rng.standard_normal(
            self.O.shape[0]))
        self.flip = flip_gradient
        self.calls = {"gradient": 0, "objective": 0, "hessian": 0, "gauss_newton": 0}

    def state(self, th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        A = self.A0 + np.diag(np.exp(th))
        x = np.linalg.solve(A, self.b)
        Jx = -np.linalg.solve(A, np.diag(np.exp(th) * x))
        return x, Jx, A

    def value(self, th: np.ndarray) -> float:
        r = self.O @ self.state(th)[0] - self.d
        return 0.5 * float(r @ r) + 0.5 * float(th @ self.R @ th)

    def grad(self, th: np.ndarray) -> np.ndarray:
        x, Jx, _ = self.state(th)
        return Jx.T @ (self.O.T @ (self.O @ x - self.d)) + self.R @ th

    def gn_matrix(self, th: np.ndarray) -> np.ndarray:
        OJ = self.O @ self.state(th)[1]
        return OJ.T @ OJ + self.R

    def hessian_matrix(self, th: np.ndarray) -> np.ndarray:
        x, Jx, A = self.state(th)
        w = np.linalg.solve(A.T, self.O.T @ (self.O @ x - self.d))
        D = w * np.exp(th)
        DJ = D[:, None] * Jx
        return self.gn_matrix(th) - (DJ + DJ.T + np.diag(D * x))

    # the solver protocol
    def objective(self, th: np.ndarray) -> float:
        self.calls["objective"] += 1
        return self.value(th)

    def gradient(self, th: np.ndarray) -> FakeGradient:
        self.calls["gradient"] += 1
        g = self.grad(th)
        return FakeGradient(self.value(th), -g if self.flip else g)

    def hessian_vector_product(self, th: np.ndarray, v: np.ndarray) -> FakeProduct:
        self.calls["hessian"] += 1
        return FakeProduct(self.hessian_matrix(th) @ v)

    def gauss_newton_vector_product(self, th: np.ndarray, v: np.ndarray) -> FakeProduct:
        self.calls["gauss_newton"] += 1
        return FakeProduct(self.gn_matrix(th) @ v)


class DoubleWell:
    """``J(θ) = Σ ¼(θᵢ² − 1)² + 0.05‖Lθ‖²``: Hessian ``diag(3θ² − 1) + 0.1 LᵀL``."""

    def __init__(self, n: int = 8) -> None:
        L = difference_matrix(n)
        self.K = 0.1 * L.T @ L

    def objective(self, th: np.ndarray) -> float:
        return float(np.sum(0.25 * (th**2 - 1) ** 2) + 0.5 * th @ self.K @ th)

    def gradient(self, th: np.ndarray) -> FakeGradient:
        return FakeGradient(self.objective(th), th**3 - th + self.K @ th)

    def hessian_matrix(self, th: np.ndarray) -> np.ndarray:
        return np.diag(3 * th**2 - 1) + self.K

    def hessian_vector_product(self, th: np.ndarray, v: np.ndarray) -> FakeProduct:
        return FakeProduct(self.hessian_matrix(th) @ v)

    def gauss_newton_vector_product(self, th: np.ndarray, v: np.ndarray) -> FakeProduct:
        return FakeProduct((np.diag(3 * th**2) + self.K) @ v)


class Prior:
    """A regularisation operator R with ``apply_inverse``."""

    def __init__(self, R: np.ndarray) -> None:
        self.R = R
        self.calls = 0

    def apply_inverse(self, v: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.linalg.solve(self.R, v)


def smoothing_prior(n: int, alpha: float = 0.1, delta: float = 1e-3) -> np.ndarray:
    L = difference_matrix(n)
    return alpha * (L.T @ L + delta * np.eye(n))


def bfgs_minimiser(problem: DenseLeastSquares, theta0: np.ndarray) -> np.ndarray:
    res = scipy.optimize.minimize(lambda th: (problem.value(th), problem.grad(th)), theta0,
                                  jac=True, method="BFGS", options={"gtol": 1e-11})
    assert np.linalg.norm(problem.grad(res.x)) < 1e-8
    return res.x


# -- the fakes are exact ------------------------------------------------------------------
def test_dense_fake_derivatives_match_finite_differences():
    problem = DenseLeastSquares(8, noise=0.3)
    rng = np.random.default_rng(1)
    th, v = 0.3 * rng.standard_normal(8), rng.standard_normal(8)
    h = 1e-6
    fd_grad = (problem.value(th + h * v) - problem.value(th - h * v)) / (2 * h)
    assert fd_grad == pytest.approx(problem.grad(th) @ v, rel=1e-7)
    fd_hess = (problem.grad(th + h * v) - problem.grad(th - h * v)) / (2 * h)
    np.testing.assert_allclose(problem.hessian_matrix(th) @ v, fd_hess, rtol=1e-6, atol=1e-9)


# -- Steihaug CG and forcing terms --------------------------------------------------------
def test_steihaug_cg_solves_spd_system_to_the_forcing_tolerance():
    rng = np.random.default_rng(2)
    Q = rng.standard_normal((10, 10))
    H = Q @ Q.T + np.eye(10)
    g = rng.standard_normal(10)
    res = steihaug_cg(lambda v: H @ v, g, rtol=1e-3, maxiter=50)
    assert res.reason == "converged" and not res.negative_curvature
    assert np.linalg.norm(H @ res.step + g) <= 1e-3 * np.linalg.norm(g) * (1 + 1e-8)
    assert g @ res.step < 0


def test_steihaug_cg_truncates_on_negative_curvature_with_a_descent_step():
    H = np.diag([1.0, 2.0, -1.0])
    g = np.array([1.0, 1.0, 1e-3])
    res = steihaug_cg(lambda v: H @ v, g, rtol=1e-12, maxiter=10)
    assert res.reason == "negative_curvature" and res.negative_curvature
    assert res.curvature <= 0 and res.iterations >= 2
    assert g @ res.step < 0
    first = steihaug_cg(lambda v: -v, g, rtol=1e-12, maxiter=10,
                        precondition=lambda v: 2 * v)
    assert first.iterations == 1
    np.testing.assert_allclose(first.step, -2 * g)  # preconditioned steepest descent


def test_eisenstat_walker_safeguards():
    ew = EisenstatWalker()
    assert ew.next(1.0, target=1e-10) == 0.5
    # ratio 0.1 gives 0.9·0.1² = 0.009, but 0.9·0.5² = 0.225 > 0.1 is the floor
    assert ew.next(0.1, target=1e-10) == pytest.approx(0.225)
    # ratio 0.1 again: the floor 0.9·0.225² ≈ 0.046 <= 0.1 no longer applies
    assert ew.next(0.01, target=1e-10) == pytest.approx(0.009)
    # no oversolving: ½τ/‖g‖ = 0.05 beats 0.9·(1e-7)²
    assert ew.next(1e-9, target=1e-10) == pytest.approx(0.05)
    assert ConstantForcing(0.1).next(1.0, target=0.0) == 0.1
    with pytest.raises(ValueError, match="unknown rule"):
        newton_cg(DenseLeastSquares(4), np.zeros(4), forcing="dembo")


# -- Newton-CG ----------------------------------------------------------------------------
def test_converges_to_the_bfgs_minimiser():
    problem = DenseLeastSquares(12)
    theta0 = np.zeros(12)
    res = newton_cg(problem, theta0, gtol=1e-10)
    assert res.converged and res.reason == "converged"
    np.testing.assert_allclose(res.theta, bfgs_minimiser(problem, theta0), atol=1e-6)
    assert res.objective == pytest.approx(problem.value(res.theta), rel=1e-14)
    assert res.gradient_norm <= res.target == pytest.approx(1e-10 * res.initial_gradient_norm)
    np.testing.assert_array_equal(theta0, 0.0)  # not modified


def gradient_norms(res) -> np.ndarray:
    return np.array([rec.gradient_norm for rec in res.history] + [res.gradient_norm])


def test_quadratic_convergence_in_the_last_iterations():
    problem = DenseLeastSquares(12, noise=0.2)
    res = newton_cg(problem, np.zeros(12), gtol=1e-13, gauss_newton_iterations=2)
    norms = gradient_norms(res)
    assert [rec.hessian for rec in res.history[:3]] == ["gauss-newton"] * 2 + ["newton"]
    # last steps: ‖g_{k+1}‖ ≤ C ‖g_k‖² with a moderate C (here C ≈ 2), except that the last
    # system is not solved beyond the target (Eisenstat-Walker's no-oversolving floor)
    tail = norms[-4:]
    assert np.all(tail[1:] <= np.maximum(10 * tail[:-1] ** 2, res.target)), norms
    ratios = tail[1:] / tail[:-1]
    assert np.all(np.diff(ratios) < 0) and ratios[-1] < 1e-3, ratios


def test_eisenstat_walker_forcing_terms_decrease():
    # with full Newton the gradient ratios shrink, so do the forcing terms (under linear
    # Gauss-Newton convergence the ratio, hence η, can go up again)
    problem = DenseLeastSquares(12, noise=0.2)
    res = newton_cg(problem, np.zeros(12), gtol=1e-10, gauss_newton_iterations=2)
    etas = np.array([rec.forcing for rec in res.history])
    assert etas[0] == 0.5 and len(etas) >= 4
    # each η_k is below the previous one, unless the no-oversolving floor ½τ/‖g_k‖ sets it
    for previous, rec in zip(res.history[:-1], res.history[1:], strict=True):
        floor = 0.5 * res.target / rec.gradient_norm
        assert rec.forcing < previous.forcing or rec.forcing == pytest.approx(floor), etas
    assert etas.min() < 1e-3 * etas[0]


def test_negative_curvature_triggers_steihaug_truncation_and_is_reported(caplog):
    problem = DoubleWell(8)
    theta0 = 0.1 * np.random.default_rng(3).standard_normal(8)
    assert np.linalg.eigvalsh(problem.hessian_matrix(theta0))[0] < 0
    with caplog.at_level(logging.INFO, logger="krylov_adjoint.newton"):
        res = newton_cg(problem, theta0, gtol=1e-10, gauss_newton_iterations=0)
    assert res.converged
    assert res.history[0].negative_curvature == 1
    assert res.history[0].cg_reason == "negative_curvature"
    assert res.negative_curvature >= 1
    assert "negative curvature" in caplog.text and "Steihaug" in caplog.text
    assert np.linalg.eigvalsh(problem.hessian_matrix(res.theta))[0] > 0  # a minimiser
    assert res.history[-1].negative_curvature == 0


def test_prior_preconditioner_reduces_cg_iterations():
    n = 30
    R = smoothing_prior(n)
    problem = DenseLeastSquares(n, R=R, observe=np.arange(0, n, 6))
    plain = newton_cg(problem, np.zeros(n), gtol=1e-8, cg_maxiter=200)
    prior = Prior(R)
    preconditioned = newton_cg(problem, np.zeros(n), gtol=1e-8, cg_maxiter=200, prior=prior)
    assert prior.calls > 0
    np.testing.assert_allclose(preconditioned.theta, plain.theta, atol=1e-6)
    assert preconditioned.cg_iterations < plain.cg_iterations / 2, (
        preconditioned.cg_iterations, plain.cg_iterations)
    # a callable works as well as an object with apply_inverse
    as_callable = newton_cg(problem, np.zeros(n), gtol=1e-8, cg_maxiter=200,
                            prior=lambda v: np.linalg.solve(R, v))
    assert as_callable.cg_iterations == preconditioned.cg_iterations


def test_line_search_failure_raises_with_the_result():
    problem = DenseLeastSquares(6, flip_gradient=True)  # a wrong gradient: no step descends
    with pytest.raises(ka.OptimizationError, match="line_search_failed") as info:
        newton_cg(problem, np.zeros(6), max_backtracks=4)
    res = info.value.result
    assert not res.converged and res.reason == "line_search_failed"
    assert "Armijo" in res.message and "raise_on_failure=False" in str(info.value)
    assert res.iterations == 1 and res.history[0].backtracks == 4
    assert res.history[0].step_length == 0.5**4
    np.testing.assert_array_equal(res.theta, np.zeros(6))  # the last accepted point
    restored = pickle.loads(pickle.dumps(info.value))
    assert type(restored) is ka.OptimizationError and str(restored) == str(info.value)
    assert restored.result.reason == "line_search_failed"
    assert restored.result.history == res.history
    quiet = newton_cg(problem, np.zeros(6), max_backtracks=4, raise_on_failure=False)
    assert quiet.reason == "line_search_failed" and not quiet.converged


def test_maxiter_without_convergence_raises_unless_asked_not_to():
    problem = DenseLeastSquares(12, noise=0.2)
    with pytest.raises(ka.OptimizationError, match="maxiter") as info:
        newton_cg(problem, np.zeros(12), maxiter=1, gtol=1e-12)
    assert info.value.result.iterations == 1 and not info.value.result.converged
    res = newton_cg(problem, np.zeros(12), maxiter=1, gtol=1e-12, raise_on_failure=False)
    assert res.reason == "maxiter" and "1 iterations reached" in res.message


def test_history_and_counts_of_solves_match_the_calls(caplog):
    problem = DenseLeastSquares(12, noise=0.2)
    seen = []
    with caplog.at_level(logging.INFO, logger="krylov_adjoint.newton"):
        res = newton_cg(problem, np.zeros(12), gtol=1e-10, gauss_newton_iterations=2,
                        callback=seen.append)
    calls = problem.calls
    assert res.gradient_evaluations == calls["gradient"]
    assert res.objective_evaluations == calls["objective"]
    assert res.hessian_actions == calls["hessian"] + calls["gauss_newton"]
    assert res.solves == 2 * (calls["gradient"] + calls["hessian"] + calls["gauss_newton"]) \
        + calls["objective"]
    assert tuple(seen) == res.history and all(isinstance(r, NewtonIteration) for r in seen)
    assert res.history[-1].solves == res.solves
    assert sum(rec.cg_iterations for rec in res.history) == res.hessian_actions
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.history[0].forcing = 1.0  # type: ignore[misc]
    assert "iteration 1 (gauss-newton)" in caplog.text and "Newton-CG converged" in caplog.text
    assert res.summary().splitlines()[-1].startswith("converged")
    assert set(res.history[0].as_dict()) >= {"objective", "gradient_norm", "cg_iterations",
                                             "step_length", "backtracks", "hessian",
                                             "forcing", "solves"}


@dataclass(frozen=True)
class RecomputingProduct:
    product: np.ndarray
    gradient_reused: bool = False


def test_a_hessian_action_that_solves_the_gradient_again_is_counted():
    problem = DenseLeastSquares(12, noise=0.2)
    real = problem.hessian_vector_product
    problem.hessian_vector_product = (  # type: ignore[method-assign]
        lambda th, v: RecomputingProduct(real(th, v).product))
    res = newton_cg(problem, np.zeros(12), gtol=1e-8, gauss_newton_iterations=1)
    newton_actions = problem.calls["hessian"]
    assert newton_actions > 0
    assert res.gradient_evaluations == problem.calls["gradient"] + newton_actions
    assert res.solves == 2 * (res.gradient_evaluations + res.hessian_actions)


def test_inputs_are_checked():
    problem = DenseLeastSquares(4)
    with pytest.raises(ka.InputError, match="gtol"):
        newton_cg(problem, np.zeros(4), gtol=-1.0)
    with pytest.raises(ka.InputError, match="c_armijo"):
        newton_cg(problem, np.zeros(4), c_armijo=1.0)
    with pytest.raises(TypeError, match="apply_inverse"):
        newton_cg(problem, np.zeros(4), prior=np.eye(4))
    with pytest.raises(TypeError, match="hessian_vector_product"):
        newton_cg(object(), np.zeros(4))
    with pytest.raises(ka.InputError, match="theta0"):
        newton_cg(problem, np.array([0.0, np.nan, 0.0, 0.0]))


def test_a_failed_solve_propagates_with_the_history():
    problem = DenseLeastSquares(12, noise=0.2)
    real = problem.gradient

    def failing(th):
        if problem.calls["gradient"] >= 2:
            raise ka.CallbackError("operator.matvec", "returned NaN")
        return real(th)

    problem.gradient = failing  # type: ignore[method-assign]
    with pytest.raises(ka.CallbackError) as info:
        newton_cg(problem, np.zeros(12))
    assert isinstance(info.value.history, tuple)


# -- distributed: two simulated ranks -----------------------------------------------------
class ThreadComm:
    """allreduce/allgather between threads, one per simulated rank."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=30)
        self.slots: list = [None] * size

    def allgather(self, value, rank: int) -> list:
        self.barrier.wait()
        self.slots[rank] = value
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out

    def allreduce(self, value: float, rank: int) -> float:
        return sum(self.allgather(value, rank))


class RankSolver:
    """One rank's view of a dense problem: θ and every product split over the ranks."""

    def __init__(self, problem: DenseLeastSquares, comm: ThreadComm, rank: int,
                 parts: list[slice]) -> None:
        self.problem, self.comm, self.rank, self.part = problem, comm, rank, parts[rank]

    def _full(self, local: np.ndarray) -> np.ndarray:
        return np.concatenate(self.comm.allgather(np.array(local), self.rank))

    def objective(self, th):
        return self.problem.value(self._full(th))

    def gradient(self, th):
        full = self._full(th)
        return FakeGradient(self.problem.value(full), self.problem.grad(full)[self.part])

    def hessian_vector_product(self, th, v):
        full, vfull = self._full(th), self._full(v)
        return FakeProduct((self.problem.hessian_matrix(full) @ vfull)[self.part])

    def gauss_newton_vector_product(self, th, v):
        full, vfull = self._full(th), self._full(v)
        return FakeProduct((self.problem.gn_matrix(full) @ vfull)[self.part])


def test_distributed_run_with_a_global_dot_gives_the_same_iterates():
    n = 13
    R = np.diag(np.linspace(0.01, 1.0, n))
    problem = DenseLeastSquares(n, R=R, noise=0.2)
    options = {"gtol": 1e-10, "gauss_newton_iterations": 2}
    serial = newton_cg(problem, np.zeros(n), prior=lambda v: v / np.diag(R), **options)

    parts = [slice(0, 6), slice(6, n)]
    comm = ThreadComm(2)

    def run(rank: int):
        part = parts[rank]
        try:
            return newton_cg(RankSolver(problem, comm, rank, parts), np.zeros(n)[part],
                             prior=lambda v: v / np.diag(R)[part],
                             dot=lambda a, b: comm.allreduce(float(a @ b), rank), **options)
        except BaseException:
            comm.barrier.abort()
            raise

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    np.testing.assert_allclose(np.concatenate([r.theta for r in results]), serial.theta,
                               rtol=1e-10, atol=1e-12)
    for res in results:
        assert res.converged and res.iterations == serial.iterations
        assert res.gradient_norm == pytest.approx(serial.gradient_norm, rel=1e-6)
        for mine, ref in zip(res.history, serial.history, strict=True):
            assert mine.cg_iterations == ref.cg_iterations
            assert mine.backtracks == ref.backtracks
            assert mine.objective == pytest.approx(ref.objective, rel=1e-12)
            assert mine.forcing == pytest.approx(ref.forcing, rel=1e-8)


# -- scipy ----------------------------------------------------------------------------------
# scipy's trust-krylov (trlib) sometimes warns of NaN·0 in its last subproblem, at convergence
@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("method,gauss_newton", [("trust-krylov", False),
                                                 ("Newton-CG", True)])
def test_scipy_hessp_drives_scipy_newton_methods(method, gauss_newton):
    problem = DenseLeastSquares(12)
    hessp = scipy_hessp(problem, gauss_newton=gauss_newton)
    res = scipy.optimize.minimize(lambda th: (problem.value(th), problem.grad(th)),
                                  np.zeros(12), jac=True, hessp=hessp, method=method,
                                  options={"gtol": 1e-10} if method != "Newton-CG"
                                  else {"xtol": 1e-12})
    np.testing.assert_allclose(res.x, bfgs_minimiser(problem, np.zeros(12)), atol=1e-6)
    kind = "gauss_newton" if gauss_newton else "hessian"
    assert hessp.n_calls == problem.calls[kind] > 0 and hessp.solves == 2 * hessp.n_calls
    with pytest.raises(TypeError, match="hessian_vector_product"):
        scipy_hessp(object())


# -- the real solver, once it has Hessian actions -----------------------------------------
def test_newton_cg_on_diffusion_2d_with_tikhonov():
    if not hasattr(ka.AdjointSolver, "hessian_vector_product"):
        pytest.skip("AdjointSolver has no hessian_vector_product yet: Newton-CG needs the "
                    "solver's Hessian and Gauss-Newton actions")
    model = ka.gallery.diffusion_2d(16)
    alpha = 1e-4
    base = model.problem
    problem = ka.AdjointProblem(base.operator, base.rhs,
                                base.objective + ka.Tikhonov(alpha), n_params=base.n_params)
    solver = ka.AdjointSolver(problem, rtol=1e-12)
    theta0 = np.zeros(model.n_params)
    res = newton_cg(solver, theta0, gtol=1e-6, maxiter=30, prior=lambda v: v / alpha)
    assert res.converged, res.summary()
    check = solver.gradient(res.theta)
    assert check.gradient_norm <= 1e-6 * res.initial_gradient_norm * 1.01
    assert res.objective < solver.objective(theta0)

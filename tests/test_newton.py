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

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.optimize

from krylov_adjoint.newton import ConstantForcing, EisenstatWalker, steihaug_cg


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

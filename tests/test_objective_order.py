"""Objective callbacks take θ first, as every other user callback does.

``Objective(J=..., dJ_dx=..., dJ_dtheta=...)`` takes ``(theta, x)`` callbacks; the former
``Objective(value, grad_x, grad_theta)`` with ``(x, theta)`` callbacks still works with a
DeprecationWarning. With P == N a swapped callback passes every shape check, so the model here
has P == N and an objective that is not symmetric in (θ, x): a swap would change the gradient.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import krylov_adjoint as ka

N = P = 12


def _system():
    """A(θ) = A₀ + diag(θ) (so λᵀ(∂A/∂θₖ)x = λₖxₖ), b fixed; J = Σ wᵢ log(1 + xᵢ²) + θᵀCx + ¼Σθ⁴."""
    rng = np.random.default_rng(3)
    A0 = sp.random(N, N, density=0.3, random_state=rng, format="csr") + 6.0 * sp.identity(N)
    A0 = A0.tocsr()
    b = rng.standard_normal(N)
    w, C = rng.uniform(0.5, 2.0, N), rng.standard_normal((P, N)) / N
    theta = rng.uniform(-1, 1, P)
    return A0, b, w, C, theta


A0, B0, W, C, THETA = _system()


def J(th, x):
    return float(np.sum(W * np.log1p(x**2)) + th @ (C @ x) + 0.25 * np.sum(th**4))


def dJ_dx(th, x):  # noqa: N802
    return 2 * W * x / (1 + x**2) + C.T @ th


def dJ_dtheta(th, x):  # noqa: N802
    return C @ x + th**3


def gradient(objective: ka.Objective, **options: bool) -> np.ndarray:
    operator = ka.ParametricOperator(
        lambda th, x: A0 @ x + th * x, n=N,
        rmatvec=lambda th, y: A0.T @ y + th * y,
        vjp=lambda th, x, lam: lam * x,
        assemble=lambda th: (A0 + sp.diags(th)).tocsr(),
    )
    problem = ka.AdjointProblem(operator, B0, objective, n_params=P)
    return ka.AdjointSolver(problem, rtol=1e-12, **options).gradient(THETA).gradient


def dense_gradient() -> np.ndarray:
    A = A0.toarray() + np.diag(THETA)
    x = np.linalg.solve(A, B0)
    lam = np.linalg.solve(A.T, dJ_dx(THETA, x))
    return dJ_dtheta(THETA, x) - lam * x


def test_theta_first_objective_gives_the_dense_reference_gradient():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        objective = ka.Objective(J=J, dJ_dx=dJ_dx, dJ_dtheta=dJ_dtheta)
    g, ref = gradient(objective), dense_gradient()
    assert np.linalg.norm(g - ref) <= 1e-8 * np.linalg.norm(ref)


def test_a_swapped_theta_first_objective_gives_a_different_gradient():
    """Why the order matters: with P == N no shape check catches the swap; the engine's
    derivative check does (its ∂J/∂θ no longer matches J), and without it the gradient is
    wrong."""
    swapped = ka.Objective(J=lambda th, x: J(x, th), dJ_dx=lambda th, x: dJ_dx(x, th),
                           dJ_dtheta=lambda th, x: dJ_dtheta(x, th))
    with pytest.raises(ka.CallbackError, match="difference quotient"):
        gradient(swapped)
    ref = dense_gradient()
    unchecked = gradient(swapped, check_gradient=False)
    assert np.linalg.norm(unchecked - ref) > 1e-2 * np.linalg.norm(ref)


@pytest.mark.parametrize("form", ["positional", "keyword"])
def test_deprecated_x_first_form_warns_and_gives_the_same_gradient(form):
    def value(x, th):
        return J(th, x)

    def grad_x(x, th):
        return dJ_dx(th, x)

    def grad_theta(x, th):
        return dJ_dtheta(th, x)

    with pytest.warns(DeprecationWarning, match=r"J=\.\.\., dJ_dx=\.\.\.") as record:
        if form == "positional":
            old = ka.Objective(value, grad_x, grad_theta)
        else:
            old = ka.Objective(value=value, grad_x=grad_x, grad_theta=grad_theta)
    assert record[0].filename == __file__, "the warning should point at the caller's line"
    new = ka.Objective(J=J, dJ_dx=dJ_dx, dJ_dtheta=dJ_dtheta)
    np.testing.assert_allclose(gradient(old), gradient(new), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("kwargs", [
    {"grad_theta": None},
    {"value": lambda x, th: 0.0, "grad_x": lambda x, th: x},
    {"grad_x": lambda x, th: x},
], ids=["grad_theta", "value-grad_x", "grad_x"])
def test_old_and_new_names_together_raise(kwargs):
    with pytest.raises(TypeError, match="not both"):
        ka.Objective(J=J, dJ_dx=dJ_dx, **kwargs)
    with pytest.raises(TypeError, match="not both"):
        ka.Objective(lambda x, th: 0.0, dJ_dx=dJ_dx)


def test_new_form_needs_j_and_dj_dx():
    with pytest.raises(TypeError, match="missing J and dJ_dx"):
        ka.Objective()
    with pytest.raises(TypeError, match="missing dJ_dx"):
        ka.Objective(J=J)
    with pytest.raises(TypeError, match="J must be callable"):
        ka.Objective(J=1.0, dJ_dx=dJ_dx)


def test_ready_made_objectives_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total = (ka.LinearFunctional(np.ones(N)) + ka.LeastSquaresMisfit(None, B0)
                 + ka.Tikhonov(0.5))
    x = np.linspace(0.0, 1.0, N)
    assert total.value(x, THETA) == pytest.approx(
        float(np.ones(N) @ x) + 0.5 * float((x - B0) @ (x - B0)) + 0.25 * float(THETA @ THETA))
    np.testing.assert_allclose(total.grad_theta(x, THETA), 0.5 * THETA)

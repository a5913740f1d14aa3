"""Second-order callbacks against central differences of the first-order ones they differentiate.

- operator ``vjp_jvp`` against the derivative of ``vjp`` in θ along dθ (x, λ fixed);
- operator ``jvp_transpose`` by the dot test ⟨y, jvp(θ, x, dθ)⟩ = ⟨jvp_transpose(θ, y, dθ), x⟩;
- rhs ``vjp_jvp`` against the derivative of ``rhs.vjp`` in θ;
- objective ``hess_*`` against the derivatives of ``grad_x`` / ``grad_theta``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint.errors import MissingCallbackError

STEP = 1e-6
FD_RTOL = 1e-6


def central(f: Callable[[np.ndarray], np.ndarray], theta: np.ndarray,
            dtheta: np.ndarray) -> np.ndarray:
    """(f(θ + h dθ) − f(θ − h dθ)) / 2h."""
    ahead, behind = f(theta + STEP * dtheta), f(theta - STEP * dtheta)
    return (np.asarray(ahead) - np.asarray(behind)) / (2 * STEP)


def close(actual: np.ndarray | None, expected: np.ndarray, rtol: float = FD_RTOL) -> None:
    """``actual`` (None meaning zero) matches ``expected`` relative to its scale."""
    got = np.zeros_like(expected) if actual is None else np.asarray(actual)
    scale = max(np.linalg.norm(expected), np.linalg.norm(got), 1e-300)
    assert np.linalg.norm(got - expected) <= rtol * scale + 1e-12, (got, expected)


def check_operator(op: ka.ParametricOperator, theta: np.ndarray, seed: int = 0) -> None:
    """vjp_jvp against FD of vjp; jvp_transpose by the dot test."""
    rng = np.random.default_rng(seed)
    x, lam, y = rng.standard_normal((3, op.n))
    dtheta = rng.standard_normal(theta.size)
    assert op.missing_second_order == ()
    op.prepare(theta)
    got = op.vjp_jvp(theta, x, lam, dtheta)
    close(got, central(lambda t: op.vjp(t, x, lam), theta, dtheta))
    left = float(y @ op.jvp(theta, x, dtheta))
    right = float(op.jvp_transpose(theta, y, dtheta) @ x)
    assert abs(left - right) <= 1e-10 * max(1.0, abs(left)), (left, right)


def check_rhs(rhs: ka.RightHandSide, theta: np.ndarray, n: int, seed: int = 0) -> None:
    """rhs.vjp_jvp against FD of rhs.vjp (None for a fixed b)."""
    rng = np.random.default_rng(seed)
    lam, dtheta = rng.standard_normal(n), rng.standard_normal(theta.size)
    if not rhs.depends_on_theta:
        assert rhs.vjp_jvp(theta, lam, dtheta) is None
        return
    assert rhs.missing_second_order == ()
    close(rhs.vjp_jvp(theta, lam, dtheta), central(lambda t: rhs.vjp(t, lam), theta, dtheta))


def check_objective(J: ka.Objective, theta: np.ndarray, x: np.ndarray, seed: int = 0) -> None:
    """The four hess_* against FD of grad_x and grad_theta, in x along v and in θ along dθ."""
    rng = np.random.default_rng(seed)
    v, dtheta = rng.standard_normal(x.size), rng.standard_normal(theta.size)
    assert J.missing_second_order == ()

    def grad_theta(xx: np.ndarray, t: np.ndarray) -> np.ndarray:
        g = J.grad_theta(xx, t)
        return np.zeros(theta.size) if g is None else np.asarray(g)

    close(J.hess_xx(x, theta, v), central(lambda s: J.grad_x(x + s[0] * v, theta),
                                          np.zeros(1), np.ones(1)))
    close(J.hess_xtheta(x, theta, dtheta), central(lambda t: J.grad_x(x, t), theta, dtheta))
    close(J.hess_thetax(x, theta, v), central(lambda s: grad_theta(x + s[0] * v, theta),
                                              np.zeros(1), np.ones(1)))
    close(J.hess_thetatheta(x, theta, dtheta),
          central(lambda t: grad_theta(x, t), theta, dtheta))


# --- the problem layer -------------------------------------------------------------------------

def quadratic_operator(**kw: object) -> ka.ParametricOperator:
    """A(θ) = diag(θ²) + S, nonsymmetric S: ∂A/∂θ·dθ = diag(2θ dθ)."""
    S = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.5, 0.0, 0.0]])
    return ka.ParametricOperator(
        lambda th, x: th**2 * x + S @ x, n=3, rmatvec=lambda th, y: th**2 * y + S.T @ y,
        vjp=lambda th, x, lam: 2 * th * lam * x, jvp=lambda th, x, dth: 2 * th * dth * x, **kw)


def test_operator_second_order_callbacks() -> None:
    op = quadratic_operator(vjp_jvp=lambda th, x, lam, dth: 2 * dth * lam * x,
                            jvp_transpose=lambda th, y, dth: 2 * th * dth * y)
    check_operator(op, np.array([1.0, -2.0, 0.5]))


def test_operator_missing_callbacks_are_named() -> None:
    op = quadratic_operator()
    assert op.missing_second_order == ("operator.vjp_jvp", "operator.jvp_transpose")
    assert op.missing_gauss_newton == ()
    theta, v = np.ones(3), np.ones(3)
    with pytest.raises(MissingCallbackError, match="operator.vjp_jvp.*gauss_newton"):
        op.vjp_jvp(theta, v, v, v)
    with pytest.raises(MissingCallbackError, match="operator.jvp_transpose"):
        op.jvp_transpose(theta, v, v)


def test_operator_symmetric_jvp_stands_in_for_jvp_transpose() -> None:
    op = ka.ParametricOperator(lambda th, x: th * x, n=2, structure="spd",
                               vjp=lambda th, x, lam: lam * x, jvp=lambda th, x, dth: dth * x)
    assert op.missing_second_order == ("operator.vjp_jvp",)
    np.testing.assert_array_equal(op.jvp_transpose(np.ones(2), np.array([1.0, 2.0]),
                                                   np.array([3.0, 4.0])), [3.0, 8.0])
    no_jvp = ka.ParametricOperator(lambda th, x: th * x, n=2, structure="spd",
                                   vjp=lambda th, x, lam: lam * x)
    assert no_jvp.missing_gauss_newton == ("operator.jvp",)
    assert "operator.jvp_transpose" in no_jvp.missing_second_order


def test_constant_operator_needs_nothing() -> None:
    op = ka.ParametricOperator.constant(sp.identity(3, format="csr"))
    assert op.missing_second_order == () and op.missing_gauss_newton == ()
    assert op.vjp_jvp(np.ones(2), np.ones(3), np.ones(3), np.ones(2)) is None
    assert op.jvp_transpose(np.ones(2), np.ones(3), np.ones(2)) is None


def test_operator_refuses_non_callable_second_order() -> None:
    with pytest.raises(TypeError, match="vjp_jvp"):
        quadratic_operator(vjp_jvp=3)
    with pytest.raises(TypeError, match="jvp_transpose"):
        quadratic_operator(jvp_transpose="no")


def test_rhs_second_order() -> None:
    rhs = ka.RightHandSide(lambda th: np.sin(th), vjp=lambda th, lam: np.cos(th) * lam,
                           jvp=lambda th, dth: np.cos(th) * dth,
                           vjp_jvp=lambda th, lam, dth: -np.sin(th) * lam * dth)
    check_rhs(rhs, np.array([0.3, -1.0, 2.0]), 3)
    check_rhs(ka.RightHandSide(np.ones(3)), np.ones(2), 3)
    assert ka.RightHandSide(np.ones(3)).missing_second_order == ()


def test_rhs_missing_vjp_jvp_is_named() -> None:
    rhs = ka.RightHandSide(lambda th: th, vjp=lambda th, lam: lam)
    assert rhs.missing_second_order == ("rhs.jvp", "rhs.vjp_jvp")
    assert rhs.missing_gauss_newton == ("rhs.jvp",)
    with pytest.raises(MissingCallbackError, match="rhs.vjp_jvp"):
        rhs.vjp_jvp(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="vjp_jvp"):
        ka.RightHandSide(lambda th: th, vjp=lambda th, lam: lam, vjp_jvp=1.0)


def user_objective(**second: object) -> ka.Objective:
    """J = ½ Σ θ_i² x_i² + Σ sin(θ_i) x_i (every second-order term nonzero)."""
    return ka.Objective(J=lambda th, x: float(0.5 * (th**2 * x**2).sum() + np.sin(th) @ x),
                        dJ_dx=lambda th, x: th**2 * x + np.sin(th),
                        dJ_dtheta=lambda th, x: th * x**2 + np.cos(th) * x, **second)


FULL = {"d2J_dx2": lambda th, x, v: th**2 * v,
        "d2J_dxdtheta": lambda th, x, dth: (2 * th * x + np.cos(th)) * dth,
        "d2J_dthetadx": lambda th, x, v: (2 * th * x + np.cos(th)) * v,
        "d2J_dtheta2": lambda th, x, dth: (x**2 - np.sin(th) * x) * dth}


def test_user_objective_second_order() -> None:
    check_objective(user_objective(**FULL), np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, -1.0]))


def test_objective_missing_terms_are_named() -> None:
    J = user_objective(d2J_dx2=FULL["d2J_dx2"])
    assert J.missing_second_order == ("objective.d2J_dxdtheta", "objective.d2J_dthetadx",
                                      "objective.d2J_dtheta2")
    assert J.missing_gauss_newton == ()
    with pytest.raises(MissingCallbackError, match="objective.d2J_dtheta2"):
        J.hess_thetatheta(np.ones(3), np.ones(3), np.ones(3))
    no_theta = ka.Objective(J=lambda th, x: 0.0, dJ_dx=lambda th, x: 0 * x)
    assert no_theta.missing_second_order == ("objective.d2J_dx2",)
    assert no_theta.hess_thetax(np.ones(3), np.ones(3), np.ones(3)) is None
    with pytest.raises(MissingCallbackError, match="objective.d2J_dx2"):
        no_theta.hess_xx(np.ones(3), np.ones(3), np.ones(3))


def test_deprecated_objective_has_no_second_order() -> None:
    with pytest.warns(DeprecationWarning):
        J = ka.Objective(lambda x, th: 0.0, lambda x, th: 0 * x)
    assert J.missing_second_order == ("objective.d2J_dx2",)


def ready_made_objectives() -> dict[str, ka.Objective]:
    rng = np.random.default_rng(1)
    O = sp.random(3, 5, density=0.6, random_state=2, format="csr")
    L = sp.diags([1.0, -1.0], [0, 1], shape=(3, 4))
    return {
        "linear": ka.LinearFunctional(rng.standard_normal(5)),
        "misfit": ka.LeastSquaresMisfit(None, rng.standard_normal(5)),
        "misfit-O-weights": ka.LeastSquaresMisfit(O, rng.standard_normal(3),
                                                  weights=np.array([1.0, 2.0, 0.5])),
        "tikhonov": ka.Tikhonov(0.7, theta_ref=rng.standard_normal(4)),
        "tikhonov-L": ka.Tikhonov(0.7, L=L),
        "sum": ka.LeastSquaresMisfit(O, rng.standard_normal(3)) + ka.Tikhonov(2.0, L=L),
    }


@pytest.mark.parametrize("name", list(ready_made_objectives()))
def test_ready_made_objectives(name: str) -> None:
    rng = np.random.default_rng(3)
    check_objective(ready_made_objectives()[name], rng.standard_normal(4), rng.standard_normal(5))


def test_zero_terms_are_none_and_sums_add() -> None:
    x, th = np.ones(5), np.ones(4)
    lin = ka.LinearFunctional(np.ones(5))
    assert lin.hess_xx(x, th, x) is None and lin.hess_thetatheta(x, th, th) is None
    total = lin + ka.LinearFunctional(np.ones(5))
    assert total.hess_xx(x, th, x) is None and total.hess_thetax(x, th, x) is None
    reg = ka.Tikhonov(1.0)
    assert reg.hess_xx(x, th, x) is None and reg.hess_thetax(x, th, x) is None
    mixed = ka.LinearFunctional(np.ones(3)) + user_objective(d2J_dx2=FULL["d2J_dx2"])
    assert mixed.missing_second_order == ("objective.d2J_dxdtheta", "objective.d2J_dthetadx",
                                          "objective.d2J_dtheta2")
    with pytest.raises(MissingCallbackError, match="objective.d2J_dxdtheta"):
        mixed.hess_xtheta(np.ones(3), np.ones(3), np.ones(3))
    check_objective(user_objective(**FULL) + ka.Tikhonov(0.5), np.array([0.1, 0.2, 0.3]),
                    np.array([1.0, -1.0, 0.5]))


def test_distributed_operator_accepts_second_order_array_callbacks() -> None:
    pytest.importorskip("petsc4py")
    pytest.importorskip("mpi4py")
    from krylov_adjoint.backends.petsc import DistributedOperator, Layout

    op = DistributedOperator(lambda th, x: th * x, layout=Layout.create(3), structure="spd",
                             vjp=lambda th, x, lam: lam * x, jvp=lambda th, x, dth: dth * x,
                             vjp_jvp=lambda th, x, lam, dth: 0 * th)
    assert op.missing_second_order == ()
    with pytest.raises(ValueError, match="array callbacks only"):
        DistributedOperator(lambda th, x, out: None, layout=Layout.create(3), structure="spd",
                            vjp=lambda th, x, lam, out: None, interface="vecs",
                            vjp_jvp=lambda th, x, lam, dth, out: None)


# --- adapters ----------------------------------------------------------------------------------

def _random_terms(n: int, P: int, seed: int, symmetric: bool) -> list[sp.csr_matrix]:
    out = []
    for k in range(P):
        M = sp.random(n, n, density=0.3, random_state=seed + k, format="csr")
        out.append((M + M.T).tocsr() if symmetric else M)
    return out


@pytest.mark.parametrize("symmetric", [False, True], ids=["general", "symmetric"])
def test_affine_operator(symmetric: bool) -> None:
    n, P = 6, 4
    op = ka.adapters.affine_operator(sp.identity(n) * 5.0, _random_terms(n, P, 7, symmetric))
    assert op.structure.is_symmetric == symmetric
    check_operator(op, np.random.default_rng(0).standard_normal(P))
    dtheta = np.arange(1.0, P + 1)
    tangent = sum(d * B for d, B in zip(dtheta, _random_terms(n, P, 7, symmetric), strict=True))
    y = np.arange(float(n))
    np.testing.assert_allclose(op.jvp_transpose(np.zeros(P), y, dtheta), tangent.T @ y)


def test_affine_rhs() -> None:
    B = sp.random(5, 3, density=0.5, random_state=0, format="csr")
    rhs = ka.adapters.affine_rhs(np.ones(5), B)
    check_rhs(rhs, np.array([1.0, 2.0, 3.0]), 5)
    np.testing.assert_array_equal(rhs.vjp_jvp(np.ones(3), np.ones(5), np.ones(3)), 0.0)


def exp_assembly(n: int = 6, P: int = 3, seed: int = 0) -> tuple[object, ...]:
    """A(θ) = 5I + Σ_k exp(θ_k) C_k on a fixed CSR pattern, C_k nonsymmetric."""
    terms = _random_terms(n, P, seed, symmetric=False)
    base = (sp.identity(n, format="csr") + sum(abs(C) for C in terms)).tocsr()
    base.sort_indices()
    rows, cols = np.repeat(np.arange(n), np.diff(base.indptr)), base.indices
    G = np.stack([np.asarray(C[rows, cols]).ravel() for C in terms], axis=1)
    v0 = 5.0 * (rows == cols)

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((v0 + G @ np.exp(theta), base.indices, base.indptr), shape=(n, n))

    def assembly_vjp(theta: np.ndarray, bar: np.ndarray) -> np.ndarray:
        return np.exp(theta) * (G.T @ bar)

    def assembly_jvp(theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return G @ (np.exp(theta) * dtheta)

    def assembly_vjp_jvp(theta: np.ndarray, bar: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return np.exp(theta) * dtheta * (G.T @ bar)

    return assemble, assembly_vjp, assembly_jvp, assembly_vjp_jvp


def test_from_assembly() -> None:
    assemble, vjp, jvp, vjp_jvp = exp_assembly()
    theta = np.array([0.1, -0.4, 0.3])
    op = ka.adapters.from_assembly(assemble, vjp, theta, assembly_jvp=jvp,
                                   assembly_vjp_jvp=vjp_jvp)
    check_operator(op, theta)


def test_from_assembly_missing_vjp_jvp_is_named() -> None:
    assemble, vjp, jvp, _ = exp_assembly()
    theta = np.zeros(3)
    op = ka.adapters.from_assembly(assemble, vjp, theta, assembly_jvp=jvp)
    assert op.missing_second_order == ("operator.vjp_jvp",)
    with pytest.raises(MissingCallbackError, match="operator.vjp_jvp"):
        op.vjp_jvp(theta, np.ones(6), np.ones(6), theta)
    no_jvp = ka.adapters.from_assembly(assemble, vjp, theta)
    assert no_jvp.missing_second_order == ("operator.jvp", "operator.vjp_jvp",
                                           "operator.jvp_transpose")
    with pytest.raises(TypeError, match="assembly_vjp_jvp"):
        ka.adapters.from_assembly(assemble, vjp, theta, assembly_vjp_jvp=2)


BAR = np.array([[1.0, -1.0], [-1.0, 1.0]])
BARS = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
ELEMENT_CASES = {
    "linear": dict(scaling="linear"),
    "exp-dirichlet": dict(scaling="exp", dirichlet_dofs=[0]),
    "simp-dirichlet": dict(scaling="simp", dirichlet_dofs=[0, 4]),
    "simp-filter": dict(scaling="simp", simp_penalty=2.5, dirichlet_dofs=[0],
                        parameter_map=np.array([[0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5],
                                                [0, 0, 1.0]])),
    "triple-law": dict(scaling=(np.square, lambda r: 2 * r, lambda r: 2.0 + 0 * r)),
}


@pytest.mark.parametrize("name", list(ELEMENT_CASES))
def test_element_operator(name: str) -> None:
    case = dict(ELEMENT_CASES[name])
    op = ka.adapters.element_operator(BAR, BARS, 5, **case)
    theta = np.random.default_rng(2).uniform(0.2, 0.9, op.n_params)
    check_operator(op, theta)


def test_element_operator_nonsymmetric_elements() -> None:
    K = np.random.default_rng(4).standard_normal((4, 2, 2)) + 3 * np.eye(2)
    op = ka.adapters.element_operator(K, BARS, 5, scaling="exp", dirichlet_dofs=[2])
    assert not op.structure.is_symmetric
    check_operator(op, np.array([0.1, 0.5, -0.3, 0.2]))


def test_element_dirichlet_rhs() -> None:
    op = ka.adapters.element_operator(BAR, BARS, 5, scaling="simp", dirichlet_dofs=[0, 4])
    theta = np.array([0.3, 0.5, 0.7, 0.9])
    check_rhs(op.dirichlet_rhs(np.ones(5), [1.0, 2.0]), theta, 5)
    B = np.random.default_rng(5).standard_normal((5, 4))
    load = ka.RightHandSide(lambda th: np.sin(B @ th),
                            vjp=lambda th, lam: B.T @ (np.cos(B @ th) * lam),
                            jvp=lambda th, dth: np.cos(B @ th) * (B @ dth),
                            vjp_jvp=lambda th, lam, dth: B.T @ (-np.sin(B @ th) * (B @ dth) * lam))
    check_rhs(load, theta, 5)
    check_rhs(op.dirichlet_rhs(load, [1.0, -1.0]), theta, 5)


def test_element_law_without_second_derivative_is_named() -> None:
    op = ka.adapters.element_operator(BAR, BARS, 5, scaling=(np.square, lambda r: 2 * r))
    assert op.missing_second_order == ("operator.vjp_jvp",)
    rhs = op.dirichlet_rhs(np.ones(5), 0.0)
    assert rhs.missing_second_order == ()
    law = ka.adapters.Scaling(np.square, lambda r: 2 * r, "square")
    with pytest.raises(MissingCallbackError, match="'square' has no second derivative"):
        law.second_derivative(np.ones(2))


@pytest.mark.parametrize("law", ["linear", "exp", "simp"])
def test_scaling_second_derivatives(law: str) -> None:
    scaling = ka.adapters.as_scaling(law, simp_penalty=3.0, simp_eps=0.01)
    rho = np.array([0.2, 0.5, 0.9])
    close(scaling.second_derivative(rho), central(scaling.derivative, rho, np.ones(3)))


# --- gallery -----------------------------------------------------------------------------------

MODELS = {
    "heat-scalar": lambda: ka.gallery.heat_1d(7, dt=0.05),
    "heat-per-cell": lambda: ka.gallery.heat_1d(7, dt=0.05, diffusivity="per_cell"),
    "diffusion2d": lambda: ka.gallery.diffusion_2d(5, 4),
    "diffusion2d-blocks": lambda: ka.gallery.diffusion_2d(6, 5, block=(2, 3)),
    "diffusion3d": lambda: ka.gallery.diffusion_3d((3, 4, 3)),
    "convection-both": lambda: ka.gallery.convection_diffusion_2d(5, 4, peclet=20),
    "convection-diffusivity": lambda: ka.gallery.convection_diffusion_2d(
        4, 5, parameters="diffusivity", velocity="constant"),
    "convection-source": lambda: ka.gallery.convection_diffusion_2d(4, 4, parameters="source"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_gallery_second_order(name: str) -> None:
    model = MODELS[name]()
    problem, theta = model.problem, model.theta
    operator = problem.operator
    if operator.depends_on_theta:
        check_operator(operator, theta)
    else:
        assert operator.missing_second_order == ()
    check_rhs(problem.rhs, theta, model.n)
    x = np.random.default_rng(5).standard_normal(model.n)
    check_objective(problem.objective, theta, x)


@pytest.mark.parametrize("name", [m for m in MODELS if m != "convection-source"])
def test_gallery_jvp_transpose_against_derivative_matrices(name: str) -> None:
    model = MODELS[name]()
    rng = np.random.default_rng(6)
    y, dtheta = rng.standard_normal(model.n), rng.standard_normal(model.n_params)
    tangent = sum(d * M for d, M in zip(dtheta, model.derivative_matrices(model.theta),
                                        strict=True))
    got = model.problem.operator.jvp_transpose(model.theta, y, dtheta)
    np.testing.assert_allclose(got, tangent.T @ y, rtol=1e-12, atol=1e-12 * np.abs(got).max())

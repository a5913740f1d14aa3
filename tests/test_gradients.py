"""The gradient engine against an independent dense reference, and its failure behaviour.

The reference solves ``A(θ)x = b(θ)`` and ``A(θ)ᵀλ = ∂J/∂x`` with ``numpy.linalg.solve`` and
forms ``∂A/∂θₖ`` explicitly: ``dJ/dθ = ∂J/∂θ − [λᵀ(∂A/∂θₖ)x]ₖ + Bᵀλ``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import given, settings
from hypothesis import strategies as st

import krylov_adjoint as ka
from krylov_adjoint.precond import ILUPreconditioner
from krylov_adjoint.verify import taylor_test_solver

RTOL = 1e-12  # of every solve in this file
GRADIENT_RTOL = 1e-6  # relative error ‖g − g_ref‖ / ‖g_ref‖ accepted


# -- models: A(θ) = A₀ + Σ θₖ Aₖ, b(θ) = b₀ + Bθ ---------------------------------------------
@dataclass(frozen=True)
class Model:
    """An affine parametric system with its callbacks and an explicit ∂A/∂θₖ."""

    name: str
    spd: bool
    A0: sp.csr_matrix
    Ak: tuple[sp.csr_matrix, ...]
    b0: np.ndarray
    B: np.ndarray
    theta: np.ndarray
    _assembled: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return self.A0.shape[0]

    @property
    def p(self) -> int:
        return len(self.Ak)

    def A(self, theta: np.ndarray) -> sp.csr_matrix:
        return self._pair(theta)[0].copy()

    def _pair(self, theta: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """A(θ) and A(θ)ᵀ, assembled once per θ (callbacks see the same θ many times)."""
        key = np.asarray(theta, dtype=float).tobytes()
        if key not in self._assembled:
            if len(self._assembled) > 16:
                self._assembled.clear()
            A = self.A0.copy()
            for t, M in zip(theta, self.Ak, strict=True):
                A = A + t * M
            self._assembled[key] = (A.tocsr(), A.T.tocsr())
        return self._assembled[key]

    def matvec(self, th, x):
        return self._pair(th)[0] @ x

    def rmatvec(self, th, y):
        return self._pair(th)[1] @ y

    def vjp(self, th, x, lam):
        return np.array([lam @ (M @ x) for M in self.Ak])

    def jvp(self, th, x, dth):
        out = np.zeros(self.n)
        for d, M in zip(dth, self.Ak, strict=True):
            out += d * (M @ x)
        return out

    def b(self, th):
        return self.b0 + self.B @ th

    def b_vjp(self, th, lam):
        return self.B.T @ lam

    def b_jvp(self, th, dth):
        return self.B @ dth

    def problem(self, objective: ka.Objective, *, rhs: object = "affine",
                structure: str | None = None, **override) -> ka.AdjointProblem:
        """The problem, with any callback replaced (``matvec=...``, ``b_vjp=...``)."""
        cb = {"matvec": self.matvec, "rmatvec": self.rmatvec, "vjp": self.vjp,
              "jvp": self.jvp, "b": self.b, "b_vjp": self.b_vjp, "b_jvp": self.b_jvp,
              **override}
        op = ka.ParametricOperator(
            cb["matvec"], n=self.n, rmatvec=cb["rmatvec"], vjp=cb["vjp"], jvp=cb["jvp"],
            structure=structure or ("spd" if self.spd else "general"), assemble=self.A)
        if isinstance(rhs, str):
            rhs = ka.RightHandSide(cb["b"], vjp=cb["b_vjp"], jvp=cb["b_jvp"])
        return ka.AdjointProblem(op, rhs, objective, n_params=self.p)


def _scaled_to(M: sp.spmatrix, size: float) -> sp.csr_matrix:
    """M scaled so that the bound ‖M‖₂ ≤ √(‖M‖₁‖M‖∞) equals ``size``."""
    M = sp.csr_matrix(M, dtype=float)
    bound = np.sqrt(spla.norm(M, 1) * spla.norm(M, np.inf))
    return M * (size / bound)


def grid_model(name: str, m: int, p: int, *, spd: bool, seed: int) -> Model:
    """A variable-coefficient 2-D diffusion (plus upwind convection unless SPD) on m × m
    cells; each Aₖ is a region indicator plus random couplings, with Σ‖Aₖ‖₂ = 0.15 so that
    A(θ) stays well posed (SPD when ``spd``) for |θ| ≤ 1."""
    rng = np.random.default_rng(seed)
    n = m * m
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    eye = sp.identity(m)
    S = sp.diags(rng.uniform(0.7, 2.0, n))
    A0 = S @ (sp.kron(T, eye) + sp.kron(eye, T) + 0.2 * sp.identity(n)) @ S
    if not spd:
        A0 = A0 + 0.8 * sp.kron(eye, sp.diags([-1.0, 1.0], [-1, 0], shape=(m, m)))
    Ak = []
    for k in range(p):
        M = sp.random(n, n, density=0.02, random_state=rng, format="csr")
        M.data = rng.uniform(-1, 1, M.data.size)
        if spd:
            M = M + M.T
        M = M + sp.diags((np.arange(n) * p // n == k).astype(float))
        Ak.append(_scaled_to(M, 0.15 / p))
    return Model(name, spd, A0.tocsr(), tuple(Ak), rng.standard_normal(n),
                 rng.standard_normal((n, p)), rng.uniform(-1, 1, p))


def random_model(n: int, p: int, seed: int, *, density: float = 0.2) -> Model:
    """A random sparse nonsymmetric A(θ), strictly diagonally dominant for |θ| ≤ 1."""
    rng = np.random.default_rng(seed)

    def sprand() -> sp.csr_matrix:
        M = sp.random(n, n, density=density, random_state=rng, format="csr")
        M.data = rng.uniform(-1, 1, M.data.size)
        return M

    Ak = tuple(sprand() for _ in range(p))
    off = sprand()
    off.setdiag(0.0)
    rows = [np.asarray(abs(M).sum(axis=1)).ravel() for M in (off, *Ak)]
    diagonal = sum(rows) + rng.uniform(0.2, 2.0, n)
    A0 = (off + sp.diags(diagonal * rng.choice([-1.0, 1.0], n))).tocsr()
    return Model(f"random-{n}x{p}", False, A0, Ak, rng.standard_normal(n),
                 rng.standard_normal((n, p)), rng.uniform(-1, 1, p))


@functools.cache
def model(name: str) -> Model:
    if name == "nonsym":
        return grid_model(name, 12, 10, spd=False, seed=1)
    if name == "spd":
        return grid_model(name, 10, 8, spd=True, seed=2)
    raise KeyError(name)


# -- objectives, each with an independent dense reference ----------------------------------
@dataclass(frozen=True)
class Reference:
    """J, ∂J/∂x and ∂J/∂θ written directly in numpy."""

    value: object
    grad_x: object
    grad_theta: object


def linear(m: Model) -> tuple[ka.Objective, Reference]:
    c = np.random.default_rng(10).standard_normal(m.n)
    return ka.LinearFunctional(c), Reference(lambda x, th: c @ x, lambda x, th: c,
                                             lambda x, th: np.zeros(m.p))


def misfit(m: Model) -> tuple[ka.Objective, Reference]:
    rng = np.random.default_rng(11)
    O = sp.random(30, m.n, density=0.1, random_state=rng, format="csr")
    d, w = rng.standard_normal(30), rng.uniform(0.5, 2.0, 30)
    L = sp.diags([-1.0, 1.0], [0, 1], shape=(m.p - 1, m.p))
    alpha, ref = 0.3, rng.standard_normal(m.p)
    Od, Ld = O.toarray(), L.toarray()
    objective = ka.LeastSquaresMisfit(O, d, weights=w) + ka.Tikhonov(alpha, L=L, theta_ref=ref)
    return objective, Reference(
        lambda x, th: 0.5 * np.sum(w * (Od @ x - d) ** 2)
        + 0.5 * alpha * np.sum((Ld @ (th - ref)) ** 2),
        lambda x, th: Od.T @ (w * (Od @ x - d)),
        lambda x, th: alpha * Ld.T @ (Ld @ (th - ref)))


def coupled(m: Model) -> tuple[ka.Objective, Reference]:
    """J(x, θ) = Σ wᵢ log(1 + xᵢ²) + θᵀC x + ¼ Σ θₖ⁴: nonlinear, with a ∂J/∂θ."""
    rng = np.random.default_rng(12)
    w, C = rng.uniform(0.5, 2.0, m.n), rng.standard_normal((m.p, m.n)) / m.n
    ref = Reference(lambda x, th: np.sum(w * np.log1p(x**2)) + th @ (C @ x) + 0.25 * np.sum(th**4),
                    lambda x, th: 2 * w * x / (1 + x**2) + C.T @ th,
                    lambda x, th: C @ x + th**3)
    return ka.Objective(J=lambda th, x: float(ref.value(x, th)),
                        dJ_dx=lambda th, x: ref.grad_x(x, th),
                        dJ_dtheta=lambda th, x: ref.grad_theta(x, th)), ref


OBJECTIVES = {"linear": linear, "misfit+tikhonov": misfit, "coupled": coupled}


@functools.cache
def registry_reference(name: str, objective: str) -> dict[str, object]:
    """The dense reference of a registry model at its θ, computed once."""
    m = model(name)
    return dense_reference(m, OBJECTIVES[objective](m)[1], m.theta)


def dense_reference(m: Model, ref: Reference, theta: np.ndarray) -> dict[str, object]:
    A = m.A(theta).toarray()
    x = np.linalg.solve(A, m.b0 + m.B @ theta)
    lam = np.linalg.solve(A.T, ref.grad_x(x, theta))
    partials = [M.toarray() for M in m.Ak]  # ∂A/∂θₖ, formed explicitly
    gradient = (ref.grad_theta(x, theta) - np.array([lam @ D @ x for D in partials])
                + m.B.T @ lam)
    return {"objective": float(ref.value(x, theta)), "gradient": gradient, "x": x,
            "adjoint": lam}


def assert_gradient_matches(result: ka.GradientResult, expected: dict[str, object],
                            rtol: float = GRADIENT_RTOL) -> None:
    """The one success check: both solves converged, J, x, λ and dJ/dθ match the reference."""
    assert result.primal.converged, result.primal.summary()
    assert result.adjoint_solve.converged, result.adjoint_solve.summary()
    for key in ("x", "adjoint", "gradient"):
        got, want = getattr(result, key), expected[key]
        error = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300)
        assert error <= rtol, f"{key}: relative error {error:.2e} > {rtol:.0e}"
    assert result.objective == pytest.approx(expected["objective"], rel=1e-9, abs=1e-12)


# -- the solver × preconditioner × problem × objective registry ---------------------------
def _cases() -> list:
    cases = []
    for name, methods in (("nonsym", ("gmres", "bicgstab")),
                          ("spd", ("gmres", "bicgstab", "cg"))):
        for objective in OBJECTIVES:
            for method in methods:
                for precond in ("none", "jacobi", "ilu"):
                    if method == "cg" and precond == "ilu":
                        continue  # ILU is not a symmetric map: CG refuses it
                    cases.append(pytest.param(name, objective, method, precond,
                                              id=f"{name}-{objective}-{method}-{precond}"))
    return cases


@pytest.mark.parametrize(("name", "objective", "method", "precond"), _cases())
def test_gradient_and_directional_derivative_match_dense_reference(name, objective, method,
                                                                   precond):
    m = model(name)
    J = OBJECTIVES[objective](m)[0]
    solver = ka.AdjointSolver(m.problem(J), method=method, preconditioner=precond, rtol=RTOL)
    result = solver.gradient(m.theta)
    assert_gradient_matches(result, registry_reference(name, objective))

    dtheta = np.random.default_rng(3).standard_normal(m.p)
    tangent = solver.directional_derivative(m.theta, dtheta)
    assert tangent.tangent_solve.converged
    scale = np.linalg.norm(result.gradient) * np.linalg.norm(dtheta)
    assert abs(tangent.derivative - result.gradient @ dtheta) <= 1e-9 * scale


MODEL_OBJECTIVES = [pytest.param(name, objective, id=f"{name}-{objective}")
                    for name in ("nonsym", "spd") for objective in OBJECTIVES]


@pytest.mark.parametrize(("name", "objective"), MODEL_OBJECTIVES)
def test_gradient_matches_central_differences_of_the_solver_objective(name, objective):
    m = model(name)
    solver = ka.AdjointSolver(m.problem(OBJECTIVES[objective](m)[0]), preconditioner="ilu",
                              rtol=1e-14, atol=1e-300)
    gradient = solver.gradient(m.theta).gradient
    h = 1e-5
    fd = np.empty(m.p)
    for k in range(m.p):
        e = np.zeros(m.p)
        e[k] = h
        fd[k] = (solver.objective(m.theta + e) - solver.objective(m.theta - e)) / (2 * h)
    error = np.linalg.norm(fd - gradient) / np.linalg.norm(gradient)
    assert error <= 1e-6, f"finite differences differ by {error:.2e}"


@pytest.mark.parametrize(("name", "objective"), MODEL_OBJECTIVES)
def test_taylor_rate_is_two(name, objective):
    m = model(name)
    solver = ka.AdjointSolver(m.problem(OBJECTIVES[objective](m)[0]), preconditioner="ilu",
                              rtol=RTOL)
    report = taylor_test_solver(solver, m.theta, rng=4)
    assert report.passed, report.summary()
    assert 1.9 <= report.min_rate and report.mean_rate <= 2.1
    assert np.allclose(report.first_order_rates, 1.0, atol=0.1)


# -- property tests on random sparse nonsymmetric systems ----------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 40), p=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       method=st.sampled_from(["gmres", "bicgstab"]),
       precond=st.sampled_from(["none", "jacobi", "ilu"]),
       objective=st.sampled_from(sorted(OBJECTIVES)))
def test_property_gradient_matches_dense_reference(n, p, seed, method, precond, objective):
    m = random_model(n, p, seed)
    J, ref = OBJECTIVES[objective](m) if objective != "misfit+tikhonov" or p > 1 else linear(m)
    solver = ka.AdjointSolver(m.problem(J), method=method, preconditioner=precond, rtol=RTOL)
    result = solver.gradient(m.theta)
    assert_gradient_matches(result, dense_reference(m, ref, m.theta))
    dtheta = np.random.default_rng(seed).standard_normal(p)
    derivative = solver.directional_derivative(m.theta, dtheta).derivative
    scale = np.linalg.norm(result.gradient) * np.linalg.norm(dtheta)
    assert abs(derivative - result.gradient @ dtheta) <= 1e-8 * scale


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 40), p=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_property_gradient_is_linear_in_the_objective(n, p, seed):
    """dJ/dθ for J = cᵀx is Σ cᵢ dxᵢ/dθ: the gradients of two functionals add."""
    m = random_model(n, p, seed)
    rng = np.random.default_rng(seed)
    c1, c2 = rng.standard_normal(n), rng.standard_normal(n)

    def grad(c: np.ndarray) -> np.ndarray:
        return ka.AdjointSolver(m.problem(ka.LinearFunctional(c)), rtol=RTOL
                                ).gradient(m.theta).gradient

    total = grad(c1 + c2)
    np.testing.assert_allclose(grad(c1) + grad(c2), total,
                               atol=1e-8 * max(np.linalg.norm(total), 1e-12))


# -- failure behaviour --------------------------------------------------------------------
def nonsym_problem(**kwargs) -> ka.AdjointProblem:
    m = model("nonsym")
    return m.problem(linear(m)[0], **kwargs)


def test_unconverged_primal_raises_convergence_error_carrying_the_result():
    m = model("nonsym")
    solver = ka.AdjointSolver(nonsym_problem(), method="gmres", preconditioner=None, maxiter=3)
    with pytest.raises(ka.ConvergenceError) as info:
        solver.gradient(m.theta)
    error = info.value
    assert error.phase == "primal"
    assert error.result.reason is ka.ConvergenceReason.DIVERGED_MAXITER
    assert error.result.iterations == 3 and error.result.x.shape == (m.n,)
    assert "DIVERGED_MAXITER" in str(error)


@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_unconverged_solves_are_returned_with_their_reason_on_request(method):
    m = model("nonsym")
    solver = ka.AdjointSolver(nonsym_problem(), method=method, preconditioner=None, maxiter=3,
                              raise_on_failure=False)
    result = solver.gradient(m.theta)
    assert result.primal.reason is ka.ConvergenceReason.DIVERGED_MAXITER
    assert result.adjoint_solve.reason is ka.ConvergenceReason.DIVERGED_MAXITER
    assert result.primal.iterations <= 3 and result.adjoint_solve.iterations <= 3


def test_unconverged_adjoint_is_named_as_such():
    m = model("nonsym")
    problem = m.problem(linear(m)[0], rhs=np.zeros(m.n))  # primal: nothing to iterate
    solver = ka.AdjointSolver(problem, preconditioner=None, maxiter=3)
    with pytest.raises(ka.ConvergenceError) as info:
        solver.gradient(m.theta)
    assert info.value.phase == "adjoint"
    assert info.value.result.reason is ka.ConvergenceReason.DIVERGED_MAXITER


def test_cg_is_refused_for_an_operator_not_declared_spd():
    with pytest.raises(ValueError, match="spd"):
        ka.AdjointSolver(nonsym_problem(), method="cg")
    m = model("spd")
    with pytest.raises(ValueError, match="symmetric positive definite"):
        ka.AdjointSolver(m.problem(linear(m)[0], structure="symmetric"), method="cg")


def test_zero_right_hand_side_gives_zero_state_without_iterations():
    m = model("nonsym")
    J, ref = coupled(m)
    result = ka.AdjointSolver(m.problem(J, rhs=np.zeros(m.n)), preconditioner="ilu",
                              rtol=RTOL).gradient(m.theta)
    assert result.primal.reason is ka.ConvergenceReason.CONVERGED_ZERO_RHS
    assert result.primal.iterations == 0 and not result.x.any()
    zero = Model(m.name, m.spd, m.A0, m.Ak, np.zeros(m.n), np.zeros_like(m.B), m.theta)
    assert_gradient_matches(result, dense_reference(zero, ref, m.theta))


def test_objective_independent_of_x_gives_zero_adjoint_without_iterations():
    m = model("nonsym")
    alpha, ref = 0.7, np.linspace(0, 1, m.p)
    result = ka.AdjointSolver(m.problem(ka.Tikhonov(alpha, theta_ref=ref)),
                              rtol=RTOL).gradient(m.theta)
    assert result.adjoint_solve.reason is ka.ConvergenceReason.CONVERGED_ZERO_RHS
    assert result.adjoint_solve.iterations == 0 and not result.adjoint.any()
    np.testing.assert_allclose(result.gradient, alpha * (m.theta - ref), rtol=1e-14)


@pytest.mark.parametrize("theta", [
    pytest.param(lambda p: np.full(p, np.nan), id="nan"),
    pytest.param(lambda p: np.r_[np.ones(p - 1), np.inf], id="inf"),
    pytest.param(lambda p: np.ones(p + 1), id="too-long"),
    pytest.param(lambda p: np.ones((p, 1)), id="column"),
    pytest.param(lambda p: np.ones(p, dtype=np.complex128), id="complex"),
])
@pytest.mark.parametrize("call", ["gradient", "objective", "directional_derivative"])
def test_a_bad_theta_is_refused_naming_theta(theta, call):
    m = model("nonsym")
    solver = ka.AdjointSolver(nonsym_problem())
    args = (theta(m.p),) if call != "directional_derivative" else (theta(m.p), np.ones(m.p))
    with pytest.raises(ka.InputError) as info:
        getattr(solver, call)(*args)
    assert info.value.argument == "theta"


def test_a_bad_direction_is_refused_naming_dtheta():
    m = model("nonsym")
    with pytest.raises(ka.InputError) as info:
        ka.AdjointSolver(nonsym_problem()).directional_derivative(m.theta, np.ones(m.p + 2))
    assert info.value.argument == "dtheta"


BAD_OUTPUTS = {
    "shape": lambda out: np.append(out, 0.0),
    "column": lambda out: np.asarray(out)[:, None],
    "float32": lambda out: np.asarray(out, dtype=np.float32),
    "complex": lambda out: np.asarray(out, dtype=np.complex128),
    "nan": lambda out: np.where(np.arange(np.size(out)) == 0, np.nan, out),
    "none": lambda out: None,
}

# callback to break, the key in Model.problem, whether the objective must be replaced
CALLBACKS = {
    "operator.matvec": "matvec", "operator.rmatvec": "rmatvec", "operator.vjp": "vjp",
    "rhs": "b", "rhs.vjp": "b_vjp", "operator.jvp": "jvp", "rhs.jvp": "b_jvp",
}


def _bad_callback_cases() -> list:
    cases = []
    for name in [*CALLBACKS, "objective.grad_x", "objective.value"]:
        kinds = (["nan", "shape", "complex", "none"] if name == "objective.value"
                 else list(BAD_OUTPUTS))
        for kind in kinds:
            expected = ka.NonFiniteError if kind == "nan" else ka.CallbackError
            cases.append(pytest.param(name, kind, expected, id=f"{name}-{kind}"))
    return cases


@pytest.mark.parametrize(("name", "kind", "expected"), _bad_callback_cases())
def test_a_bad_callback_output_is_refused_naming_the_callback(name, kind, expected):
    m = model("nonsym")
    J, ref = coupled(m)
    spoil = BAD_OUTPUTS[kind]
    if name == "objective.grad_x":
        J = ka.Objective(J=lambda th, x: float(ref.value(x, th)),
                         dJ_dx=lambda th, x: spoil(ref.grad_x(x, th)),
                         dJ_dtheta=lambda th, x: ref.grad_theta(x, th))
        problem = m.problem(J)
    elif name == "objective.value":
        bad = {"nan": np.nan, "shape": np.ones(2), "complex": 1j, "none": None}[kind]
        problem = m.problem(ka.Objective(J=lambda th, x: bad,
                                         dJ_dx=lambda th, x: ref.grad_x(x, th),
                                         dJ_dtheta=lambda th, x: ref.grad_theta(x, th)))
    else:
        key = CALLBACKS[name]
        good = getattr(m, key)
        problem = m.problem(J, **{key: lambda *args, good=good: spoil(good(*args))})
    solver = ka.AdjointSolver(problem, preconditioner="ilu", rtol=RTOL)
    call = (solver.directional_derivative if name.endswith("jvp")
            else solver.gradient)
    args = (m.theta, np.ones(m.p)) if name.endswith("jvp") else (m.theta,)
    with pytest.raises(expected) as info:
        call(*args)
    assert info.value.callback == name, str(info.value)


@pytest.mark.parametrize("key", ["matvec", "rmatvec", "vjp", "b_vjp"])
def test_a_callback_that_raises_or_writes_into_its_input_is_named(key):
    m = model("nonsym")
    name = {"matvec": "operator.matvec", "rmatvec": "operator.rmatvec",
            "vjp": "operator.vjp", "b_vjp": "rhs.vjp"}[key]

    def raises(*args):
        raise ZeroDivisionError("inside the user's code")

    def writes(th, first, *rest):
        first[0] = 0.0  # inputs are read-only
        return getattr(m, key)(th, first, *rest)

    for bad, message in ((raises, "ZeroDivisionError"), (writes, "read-only")):
        solver = ka.AdjointSolver(m.problem(linear(m)[0], **{key: bad}), rtol=RTOL)
        with pytest.raises(ka.CallbackError, match=message) as info:
            solver.gradient(m.theta)
        assert info.value.callback == name


def test_missing_callbacks_are_refused_at_construction():
    m = model("nonsym")
    with pytest.raises(ValueError, match="rmatvec is required"):
        ka.ParametricOperator(m.matvec, n=m.n, vjp=m.vjp)
    with pytest.raises(ValueError, match="vjp is required"):
        ka.ParametricOperator(m.matvec, n=m.n, rmatvec=m.rmatvec)
    with pytest.raises(ValueError, match="rhs vjp"):
        ka.RightHandSide(m.b)
    solver = ka.AdjointSolver(m.problem(linear(m)[0], jvp=None))
    with pytest.raises(ka.MissingCallbackError, match="operator jvp"):
        solver.directional_derivative(m.theta, np.ones(m.p))


def test_user_arrays_are_never_modified():
    m = model("nonsym")
    rng = np.random.default_rng(6)
    theta, dtheta = m.theta.copy(), rng.standard_normal(m.p)
    b, c, d = rng.standard_normal(m.n), rng.standard_normal(m.n), rng.standard_normal(m.n)
    data = {"theta": theta, "dtheta": dtheta, "b": b, "c": c, "d": d,
            **{f"A{k}": M.data for k, M in enumerate(m.Ak)}, "A0": m.A0.data, "B": m.B}
    before = {key: value.copy() for key, value in data.items()}
    for objective in (ka.LinearFunctional(c), ka.LeastSquaresMisfit(None, d) + ka.Tikhonov(1.0)):
        for rhs in (b, "affine"):
            solver = ka.AdjointSolver(m.problem(objective, rhs=rhs), preconditioner="ilu")
            solver.gradient(theta)
            solver.objective(theta)
            solver.directional_derivative(theta, dtheta)
            taylor_test_solver(solver, theta, rng=0)
    for key, value in data.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_warm_start_at_a_nearby_theta_takes_no_more_iterations(method):
    m = model("nonsym")
    J = coupled(m)[0]
    nearby = m.theta + 1e-3 * np.random.default_rng(7).standard_normal(m.p)
    warm = ka.AdjointSolver(m.problem(J), method=method, preconditioner="jacobi", rtol=1e-10)
    warm.gradient(m.theta)
    second = warm.gradient(nearby)
    cold = ka.AdjointSolver(m.problem(J), method=method, preconditioner="jacobi",
                            rtol=1e-10).gradient(nearby)
    assert second.primal.iterations <= cold.primal.iterations
    assert second.adjoint_solve.iterations <= cold.adjoint_solve.iterations
    assert second.primal.iterations < cold.primal.iterations  # it does help here
    np.testing.assert_allclose(second.gradient, cold.gradient, rtol=1e-7)


def counting_ilu():
    """An ILU factory recording the matrix of every set-up, and that record."""
    setups = []

    def ilu(A):
        setups.append(A)
        return ILUPreconditioner(A)

    return ilu, setups


def test_preconditioner_is_set_up_once_and_rebuilt_on_request():
    m = model("nonsym")
    ilu, setups = counting_ilu()
    solver = ka.AdjointSolver(m.problem(coupled(m)[0]), preconditioner=ilu, rtol=RTOL,
                              rebuild_factor=None)
    first = solver.gradient(m.theta)
    assert first.preconditioner_rebuilt and len(setups) == 1  # not again for the adjoint
    second = solver.gradient(m.theta + 0.01)
    assert not second.preconditioner_rebuilt and len(setups) == 1
    solver.directional_derivative(m.theta, np.ones(m.p))
    assert len(setups) == 1
    solver.rebuild_preconditioner()
    third = solver.gradient(m.theta + 0.02)
    assert third.preconditioner_rebuilt and len(setups) == 2
    np.testing.assert_allclose(setups[1].toarray(), m.A(m.theta + 0.02).toarray())
    assert not solver.gradient(m.theta).preconditioner_rebuilt


def test_without_reuse_the_preconditioner_is_set_up_once_per_new_theta():
    m = model("nonsym")
    ilu, setups = counting_ilu()
    solver = ka.AdjointSolver(m.problem(coupled(m)[0]), preconditioner=ilu, rtol=RTOL,
                              reuse_preconditioner=False)
    assert solver.gradient(m.theta).preconditioner_rebuilt and len(setups) == 1
    solver.directional_derivative(m.theta, np.ones(m.p))  # same θ: shared
    again = solver.gradient(m.theta)
    assert not again.preconditioner_rebuilt and len(setups) == 1
    moved = solver.gradient(m.theta + 0.01)
    assert moved.preconditioner_rebuilt and len(setups) == 2
    assert "new theta" in moved.preconditioner_note
    np.testing.assert_allclose(setups[1].toarray(), m.A(m.theta + 0.01).toarray())
    reference = ka.AdjointSolver(m.problem(coupled(m)[0]), preconditioner="ilu", rtol=RTOL)
    np.testing.assert_allclose(moved.gradient, reference.gradient(m.theta + 0.01).gradient,
                               rtol=1e-6)


def test_a_protocol_only_preconditioner_object_is_accepted():
    class GaussSeidel:  # shape, apply, apply_transpose: the documented protocol, no .T
        def __init__(self, A):
            self.lower, self.shape = sp.tril(A, format="csr"), A.shape

        def apply(self, r):
            return sp.linalg.spsolve_triangular(self.lower, r, lower=True)

        def apply_transpose(self, r):
            return sp.linalg.spsolve_triangular(self.lower.T.tocsr(), r, lower=False)

    m = model("nonsym")
    J, ref = coupled(m)
    solver = ka.AdjointSolver(m.problem(J), preconditioner=GaussSeidel(m.A(m.theta)),
                              rtol=RTOL)
    assert_gradient_matches(solver.gradient(m.theta), dense_reference(m, ref, m.theta))


def test_bicgstab_respects_maxiter_at_a_round_off_tolerance():
    """On this system the recurrence residual falls below 1e-16·‖b‖ while the true one
    cannot: each restart from the true residual must still count against maxiter."""
    n, rng = 50, np.random.default_rng(2)
    A = (sp.random(n, n, density=0.1, random_state=2) + sp.diags(rng.uniform(0.5, 3, n)))
    b = rng.standard_normal(n)
    m = Model("stagnating", False, A.tocsr(), (sp.identity(n, format="csr"),), b,
              np.zeros((n, 1)), np.zeros(1))
    seen = []

    def monitor(phase, iteration, residual):
        seen.append(iteration)
        if iteration > 1000:
            raise RuntimeError("still iterating")

    solver = ka.AdjointSolver(m.problem(linear(m)[0], rhs=b), method="bicgstab",
                              preconditioner=None, rtol=1e-16, maxiter=200, monitor=monitor,
                              raise_on_failure=False)
    try:
        result = solver.gradient(m.theta)
    except RuntimeError:
        pytest.fail(f"bicgstab ran {max(seen)} iterations with maxiter=200")
    assert result.primal.iterations <= 200 and result.adjoint_solve.iterations <= 200

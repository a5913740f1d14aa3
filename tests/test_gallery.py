"""The gallery's model problems: callbacks against assembled matrices, derivatives and FD."""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from krylov_adjoint import InputError, LinearFunctional
from krylov_adjoint.gallery import (
    ModelProblem,
    convection_diffusion_2d,
    diffusion_2d,
    diffusion_3d,
    heat_1d,
)

# -- registry -----------------------------------------------------------------------------------

CASES: dict[str, Callable[[], ModelProblem]] = {
    "heat-scalar": lambda: heat_1d(9),
    "heat-per_cell": lambda: heat_1d(9, dt=0.01, diffusivity="per_cell"),
    "diffusion_2d": lambda: diffusion_2d(6, 5),
    "diffusion_2d-block2": lambda: diffusion_2d(6, 5, block=2),
    "diffusion_2d-block4x3": lambda: diffusion_2d(7, 5, block=(4, 3)),
    "diffusion_3d": lambda: diffusion_3d((4, 3, 5)),
    "diffusion_3d-block": lambda: diffusion_3d(4, block=(2, 3, 4)),
    "convdiff-both-rotating-Pe100": lambda: convection_diffusion_2d(6, 5),
    "convdiff-both-constant-Pe1000": lambda: convection_diffusion_2d(
        5, 6, peclet=1000, velocity="constant"),
    "convdiff-diffusivity-constant-Pe1": lambda: convection_diffusion_2d(
        6, 5, peclet=1, velocity="constant", parameters="diffusivity"),
    "convdiff-source-rotating-Pe1000": lambda: convection_diffusion_2d(
        6, 5, peclet=1000, parameters="source"),
}
ALL = list(CASES)
WITH_A_OF_THETA = [c for c in ALL if not c.startswith("convdiff-source")]
WITH_B_OF_THETA = [c for c in ALL if c.startswith(("convdiff-both", "convdiff-source"))]
SPD = [c for c in ALL if not c.startswith("convdiff")]
NONSYMMETRIC = [c for c in ALL if c.startswith("convdiff")]


@functools.cache
def model(case: str) -> ModelProblem:
    return CASES[case]()


def vectors(case: str, count: int, length: int | None = None) -> list[np.ndarray]:
    m = model(case)
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    return [rng.standard_normal(m.n if length is None else length) for _ in range(count)]


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual − expected| / max |expected|."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def vjp_fd_error(m: ModelProblem, vjp: Callable, x: np.ndarray, lam: np.ndarray,
                 step: float = 1e-5) -> float:
    """Relative error of ``vjp(θ, x, λ)`` against central differences of θ ↦ λᵀA(θ)x."""
    theta = m.theta
    fd = np.empty(m.n_params)
    for k in range(m.n_params):
        e = np.zeros(m.n_params)
        e[k] = step
        fd[k] = lam @ (m.problem.matvec(theta + e, x) - m.problem.matvec(theta - e, x)) \
            / (2 * step)
    return relative_error(vjp(theta, x, lam), fd)


# -- the record ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ALL)
def test_record_fields(case: str) -> None:
    m = model(case)
    assert m.theta.dtype == np.float64 and m.theta.shape == (m.n_params,)
    assert not m.theta.flags.writeable
    assert int(np.prod(m.grid)) == m.n and isinstance(m.name, str) and m.name
    assert m.theta_true is not None and m.theta_true.shape == m.theta.shape
    assert (m.derivative_matrices is None) == (case not in WITH_A_OF_THETA)
    assert (m.rhs_derivative is None) == (case not in WITH_B_OF_THETA)


@pytest.mark.parametrize("case", ALL)
def test_default_objective_data_come_from_theta_true(case: str) -> None:
    m, p = model(case), model(case).problem
    x_true = spla.spsolve(p.assemble(m.theta_true).tocsc(), p.b(m.theta_true))
    x_ref = spla.spsolve(p.assemble(m.theta).tocsc(), p.b(m.theta))
    assert p.objective_value(x_true, m.theta_true) < 1e-20 * max(1.0, x_true @ x_true)
    assert p.objective_value(x_ref, m.theta) > 1e-8


# -- (a), (b): callbacks against the assembled matrix -------------------------------------------

@pytest.mark.parametrize("case", ALL)
def test_matvec_equals_assembled_product(case: str) -> None:
    m = model(case)
    A = m.problem.assemble(m.theta)
    (x,) = vectors(case, 1)
    assert relative_error(m.problem.matvec(m.theta, x), A @ x) < 1e-13


@pytest.mark.parametrize("case", ALL)
def test_rmatvec_equals_assembled_transpose(case: str) -> None:
    m = model(case)
    A = m.problem.assemble(m.theta)
    x, y = vectors(case, 2)
    ATy = m.problem.rmatvec(m.theta, y)
    assert relative_error(ATy, A.T @ y) < 1e-13
    lhs, rhs = y @ m.problem.matvec(m.theta, x), x @ ATy
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


# -- (c), (d): operator derivatives -------------------------------------------------------------

@pytest.mark.parametrize("case", WITH_A_OF_THETA)
def test_vjp_equals_derivative_matrices(case: str) -> None:
    m = model(case)
    x, lam = vectors(case, 2)
    D = m.derivative_matrices(m.theta)
    assert len(D) == m.n_params and all(Dk.shape == (m.n, m.n) for Dk in D)
    expected = np.array([lam @ (Dk @ x) for Dk in D])
    assert relative_error(m.problem.operator_vjp(m.theta, x, lam), expected) < 1e-12


@pytest.mark.parametrize("case", WITH_A_OF_THETA)
def test_vjp_equals_finite_differences(case: str) -> None:
    m = model(case)
    x, lam = vectors(case, 2)
    assert vjp_fd_error(m, m.problem.operator_vjp, x, lam) < 1e-6


def test_vjp_check_detects_a_wrong_vjp() -> None:
    m = model("diffusion_2d")
    x, lam = vectors("diffusion_2d", 2)

    def wrong(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        g = m.problem.operator_vjp(theta, x, lam)
        g[3] *= 1 + 1e-5
        return g

    assert vjp_fd_error(m, wrong, x, lam) > 1e-6


@pytest.mark.parametrize("case", WITH_A_OF_THETA)
def test_derivative_matrices_equal_finite_differences_of_assemble(case: str) -> None:
    m = model(case)
    D = m.derivative_matrices(m.theta)
    step, worst, scale = 1e-5, 0.0, max(abs(Dk).max() for Dk in D)
    for k in range(m.n_params):
        e = np.zeros(m.n_params)
        e[k] = step
        fd = (m.problem.assemble(m.theta + e) - m.problem.assemble(m.theta - e)) / (2 * step)
        worst = max(worst, abs(fd - D[k]).max())
    assert worst < 1e-6 * scale


@pytest.mark.parametrize("case", WITH_A_OF_THETA)
def test_jvp_is_the_transpose_of_vjp(case: str) -> None:
    m = model(case)
    x, lam = vectors(case, 2)
    (dtheta,) = vectors(case, 1, m.n_params)
    jvp = m.problem.operator_jvp(m.theta, x, dtheta)
    lhs, rhs = lam @ jvp, m.problem.operator_vjp(m.theta, x, lam) @ dtheta
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    D = m.derivative_matrices(m.theta)
    assert relative_error(jvp, sum(dk * (Dk @ x) for dk, Dk in zip(dtheta, D, strict=True))) < 1e-12


def test_operator_independent_of_theta_in_the_source_layout() -> None:
    m = model("convdiff-source-rotating-Pe1000")
    (x,) = vectors("convdiff-source-rotating-Pe1000", 1)
    assert m.problem.operator_vjp(m.theta, x, x) is None
    assert np.array_equal(m.problem.matvec(m.theta, x), m.problem.matvec(2 * m.theta, x))


# -- (e): right-hand side derivatives ----------------------------------------------------------

@pytest.mark.parametrize("case", WITH_B_OF_THETA)
def test_rhs_vjp_and_jvp_equal_the_derivative(case: str) -> None:
    m, p = model(case), model(case).problem
    (lam,) = vectors(case, 1)
    (dtheta,) = vectors(case, 1, m.n_params)
    dbdtheta = m.rhs_derivative(m.theta)
    assert dbdtheta.shape == (m.n, m.n_params)
    assert relative_error(p.rhs_vjp(m.theta, lam), lam @ dbdtheta) < 1e-14
    assert relative_error(p.rhs_jvp(m.theta, dtheta), dbdtheta @ dtheta) < 1e-14
    lhs, rhs = lam @ p.rhs_jvp(m.theta, dtheta), p.rhs_vjp(m.theta, lam) @ dtheta
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    step = 1e-3
    fd = (p.b(m.theta + step * dtheta) - p.b(m.theta - step * dtheta)) / (2 * step)
    assert relative_error(p.rhs_jvp(m.theta, dtheta), fd) < 1e-6


@pytest.mark.parametrize("case", [c for c in ALL if c not in WITH_B_OF_THETA])
def test_fixed_rhs_has_no_derivative(case: str) -> None:
    m = model(case)
    assert not m.problem.rhs.depends_on_theta
    assert m.problem.rhs_vjp(m.theta, np.ones(m.n)) is None


@pytest.mark.parametrize("case", ALL)
def test_adjoint_gradient_matches_finite_differences_of_the_objective(case: str) -> None:
    m, p = model(case), model(case).problem

    def state(theta: np.ndarray) -> np.ndarray:
        return spla.spsolve(p.assemble(theta).tocsc(), p.b(theta))

    x = state(m.theta)
    lam = spla.spsolve(p.assemble(m.theta).T.tocsc(), p.objective_grad_x(x, m.theta))
    gradient = p.parameter_gradient(m.theta, x, lam)
    (direction,) = vectors(case, 1, m.n_params)
    step = 1e-5
    fd = (p.objective_value(state(m.theta + step * direction), m.theta + step * direction)
          - p.objective_value(state(m.theta - step * direction), m.theta - step * direction)) \
        / (2 * step)
    assert abs(gradient @ direction - fd) <= 1e-6 * abs(fd)


# -- (f): structure ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", SPD)
def test_spd_problems_are_spd(case: str) -> None:
    m = model(case)
    assert m.problem.structure.value == "spd"
    A = m.problem.assemble(m.theta).toarray()
    assert np.array_equal(A, A.T)
    assert np.linalg.eigvalsh(A).min() > 0


@pytest.mark.parametrize("case", NONSYMMETRIC)
def test_convection_diffusion_is_nonsymmetric_and_nonsingular(case: str) -> None:
    m = model(case)
    assert m.problem.structure.value == "general"
    A = m.problem.assemble(m.theta).toarray()
    assert np.abs(A - A.T).max() > 1e-2 * np.abs(A).max()
    assert np.linalg.eigvals(A).real.min() > 0


def test_peclet_number_controls_the_skew_part() -> None:
    def skewness(peclet: float) -> float:
        m = convection_diffusion_2d(8, peclet=peclet, parameters="diffusivity")
        A = m.problem.assemble(m.theta).toarray()
        return float(np.linalg.norm(A - A.T) / np.linalg.norm(A + A.T))

    ratios = [skewness(pe) for pe in (1, 10, 100, 1000)]
    assert ratios == sorted(ratios) and ratios[0] < 0.05 and ratios[-1] > 0.3


# -- the discretisations -------------------------------------------------------------------------

def test_heat_matrix_for_a_constant_diffusivity() -> None:
    n, dt = 5, 0.01
    m = heat_1d(n, dt=dt)
    r = dt * 2.0 * (n + 1) ** 2
    expected = (1 + 2 * r) * np.eye(n) - r * (np.eye(n, k=1) + np.eye(n, k=-1))
    A = m.problem.assemble(np.array([np.log(2.0)])).toarray()
    assert relative_error(A, expected) < 1e-14


def test_diffusion_converges_at_second_order() -> None:
    errors = []
    for n in (8, 16, 32):
        x = (np.arange(n) + 0.5) / n
        exact = np.outer(np.sin(np.pi * x), np.sin(np.pi * x)).reshape(-1)
        m = diffusion_2d(n, source=2 * np.pi**2 * exact, objective=LinearFunctional(exact))
        u = spla.spsolve(m.problem.assemble(np.zeros(n * n)).tocsc(), m.problem.b(m.theta))
        errors.append(np.abs(u - exact).max())
    assert errors[0] / errors[1] > 3.5 and errors[1] / errors[2] > 3.5


def test_upwinding_takes_the_upstream_neighbours() -> None:
    nx, ny = 6, 5
    m = convection_diffusion_2d(nx, ny, peclet=1e12, velocity="constant",
                                parameters="source")
    A = m.problem.assemble(m.theta).toarray()
    c = 3 * ny + 2  # cell (3, 2): axis 0 is x, flattened in C order
    assert A[c, c - ny] == pytest.approx(-np.cos(np.pi / 6) * nx)
    assert A[c, c - 1] == pytest.approx(-np.sin(np.pi / 6) * ny)
    assert abs(A[c, c + ny]) < 1e-9 and abs(A[c, c + 1]) < 1e-9


@pytest.mark.parametrize("velocity", ["rotating", "constant"])
def test_convection_is_discretely_divergence_free(velocity: str) -> None:
    nx, ny = 6, 5
    m = convection_diffusion_2d(nx, ny, peclet=1e12, velocity=velocity, parameters="source")
    A = m.problem.assemble(m.theta).toarray()
    interior = np.zeros((nx, ny), dtype=bool)
    interior[1:-1, 1:-1] = True
    assert np.abs((A @ np.ones(nx * ny))[interior.reshape(-1)]).max() < 1e-9 * np.abs(A).max()


# -- (g): inputs are left alone ----------------------------------------------------------------

def _frozen(array: np.ndarray) -> np.ndarray:
    out = array.copy()
    out.flags.writeable = False
    return out


@pytest.mark.parametrize("case", ALL)
def test_callbacks_do_not_modify_their_inputs(case: str) -> None:
    m = model(case)
    op, rhs, objective = m.problem.operator, m.problem.rhs, m.problem.objective
    x, y = vectors(case, 2)
    (dtheta,) = vectors(case, 1, m.n_params)
    inputs = {"theta": np.array(m.theta), "x": x, "y": y, "dtheta": dtheta}
    before = {k: v.copy() for k, v in inputs.items()}
    for args in (inputs, {k: _frozen(v) for k, v in inputs.items()}):
        th, xx, yy, dth = args["theta"], args["x"], args["y"], args["dtheta"]
        op.matvec(th, xx)
        op.rmatvec(th, yy)
        op.assemble(th)
        objective.value(xx, th)
        objective.grad_x(xx, th)
        if op.depends_on_theta:
            op.vjp(th, xx, yy)
            op.jvp(th, xx, dth)
            m.derivative_matrices(th)
        if rhs.depends_on_theta:
            rhs.value(th)
            rhs.vjp(th, yy)
            rhs.jvp(th, dth)
            m.rhs_derivative(th)
    for k, v in inputs.items():
        assert np.array_equal(v, before[k]), k


# -- layouts, options and errors -----------------------------------------------------------------

@pytest.mark.parametrize(("factory", "n_params"), [
    pytest.param(lambda: heat_1d(9), 1, id="heat-scalar"),
    pytest.param(lambda: heat_1d(9, diffusivity="per_cell"), 10, id="heat-per_cell"),
    pytest.param(lambda: diffusion_2d(6, 5), 30, id="diffusion_2d"),
    pytest.param(lambda: diffusion_2d(7, 5, block=(4, 3)), 4, id="diffusion_2d-block"),
    pytest.param(lambda: diffusion_2d(10, block=(10, 1)), 10, id="diffusion_2d-strips"),
    pytest.param(lambda: diffusion_3d((4, 3, 5), block=(4, 3, 5)), 1, id="diffusion_3d-one"),
    pytest.param(lambda: convection_diffusion_2d(6, 5), 60, id="convdiff-both"),
    pytest.param(lambda: convection_diffusion_2d(6, 5, parameters="source"), 30,
                 id="convdiff-source"),
])
def test_parameter_counts(factory: Callable[[], ModelProblem], n_params: int) -> None:
    assert factory().n_params == n_params


def test_block_vjp_sums_the_cell_vjp_over_blocks() -> None:
    blocked, cells = diffusion_2d(7, 5, block=(4, 3)), diffusion_2d(7, 5)
    x, lam = vectors("diffusion_2d-block4x3", 2)
    block_of_cell = np.add.outer(np.arange(7) // 4 * 2, np.arange(5) // 3).reshape(-1)
    theta_cells = blocked.theta[block_of_cell]
    assert np.array_equal(blocked.problem.matvec(blocked.theta, x),
                          cells.problem.matvec(theta_cells, x))
    per_cell = cells.problem.operator_vjp(theta_cells, x, lam)
    expected = np.bincount(block_of_cell, weights=per_cell)
    assert relative_error(blocked.problem.operator_vjp(blocked.theta, x, lam), expected) < 1e-13


def test_objective_can_be_swapped() -> None:
    objective = LinearFunctional(np.ones(30))
    m = diffusion_2d(6, 5, objective=objective)
    assert m.problem.objective is objective and m.theta_true is None


@pytest.mark.parametrize("factory", [
    pytest.param(lambda: diffusion_2d(6, 5, source=1.0), id="diffusion_2d"),
    pytest.param(lambda: convection_diffusion_2d(6, 5, parameters="diffusivity",
                                                 source=np.ones(30)), id="convdiff"),
])
def test_user_source_gives_consistent_synthetic_data(
        factory: Callable[[], ModelProblem]) -> None:
    m = factory()
    p = m.problem
    assert np.array_equal(p.b(m.theta), np.ones(m.n))
    x_true = spla.spsolve(p.assemble(m.theta_true).tocsc(), p.b(m.theta_true))
    assert p.objective_value(x_true, m.theta_true) < 1e-24


@pytest.mark.parametrize("make", [
    pytest.param(lambda: heat_1d(5001, objective=LinearFunctional(np.ones(5001)))
                 .derivative_matrices, id="heat"),
    pytest.param(lambda: diffusion_2d(80, objective=LinearFunctional(np.ones(6400)))
                 .derivative_matrices, id="diffusion_2d"),
    pytest.param(lambda: convection_diffusion_2d(80, objective=LinearFunctional(np.ones(6400)))
                 .rhs_derivative, id="convdiff-rhs"),
])
def test_explicit_derivatives_refuse_large_problems(make: Callable) -> None:
    reference = make()
    with pytest.raises(InputError, match="N <= 5000"):
        reference(np.zeros(1))


@pytest.mark.parametrize("call", [
    pytest.param(lambda: heat_1d(1), id="heat-n"),
    pytest.param(lambda: heat_1d(8, dt=-1.0), id="heat-dt"),
    pytest.param(lambda: heat_1d(8, diffusivity="per_face"), id="heat-diffusivity"),
    pytest.param(lambda: heat_1d(8, initial=np.ones(3)), id="heat-initial"),
    pytest.param(lambda: diffusion_2d(4, 2.5), id="diffusion_2d-ny"),
    pytest.param(lambda: diffusion_2d(4, block=5), id="diffusion_2d-block-too-big"),
    pytest.param(lambda: diffusion_2d(4, block=(2, 2, 2)), id="diffusion_2d-block-axes"),
    pytest.param(lambda: diffusion_2d(4, observe_every=0), id="diffusion_2d-observe"),
    pytest.param(lambda: diffusion_2d(4, source=np.ones(3)), id="diffusion_2d-source"),
    pytest.param(lambda: diffusion_3d((4, 4)), id="diffusion_3d-shape"),
    pytest.param(lambda: convection_diffusion_2d(4, peclet=0), id="convdiff-peclet"),
    pytest.param(lambda: convection_diffusion_2d(4, velocity="swirl"), id="convdiff-velocity"),
    pytest.param(lambda: convection_diffusion_2d(4, parameters="all"), id="convdiff-layout"),
    pytest.param(lambda: convection_diffusion_2d(4, source=1.0), id="convdiff-source"),
])
def test_invalid_arguments_are_refused(call: Callable) -> None:
    with pytest.raises(InputError):
        call()


# -- (h): size ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("factory", [
    pytest.param(lambda: diffusion_2d(1000), id="diffusion_2d-1000x1000"),
    pytest.param(lambda: diffusion_3d(100), id="diffusion_3d-100^3"),
])
def test_a_million_unknowns_build_and_apply_quickly(factory: Callable[[], ModelProblem]
                                                    ) -> None:
    start = time.perf_counter()
    m = factory()
    x = np.ones(m.n)
    y = m.problem.matvec(m.theta, x)
    elapsed = time.perf_counter() - start
    assert m.n == 10**6 and np.isfinite(y).all()
    assert elapsed < 5.0, f"build + one matvec took {elapsed:.2f} s"

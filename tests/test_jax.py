"""krylov_adjoint.jax: gradients through the host solves, against the library and dense algebra.

The gallery's finite-volume diffusion and convection–diffusion operators are written again in
JAX here; the JAX primitive's gradients must equal the library's own (AdjointSolver on the
gallery's numpy callbacks) and the dense reference to 1e-8.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import dense_reference, framework, relative_error

import krylov_adjoint as ka
from krylov_adjoint import gallery
from krylov_adjoint.gallery._upwind import upwind_stencil

jax = framework("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import krylov_adjoint.jax as kj  # noqa: E402

RTOL = 1e-12  # Krylov tolerance: the gradients agree to 1e-8


def fv_diffusion(shape, scale=1.0):
    """The gallery's −∇·(k∇u), k = scale·exp(θ) per cell (harmonic face means), in JAX."""
    spacing = [1.0 / m for m in shape]

    def matvec(theta, x):
        k = scale * jnp.exp(theta).reshape(shape)
        u = x.reshape(shape)
        out = jnp.zeros(shape)
        for axis, h in enumerate(spacing):
            m = shape[axis]
            kl, kr = (jax.lax.slice_in_dim(k, a, a + m - 1, axis=axis) for a in (0, 1))
            ul, ur = (jax.lax.slice_in_dim(u, a, a + m - 1, axis=axis) for a in (0, 1))
            flux = 2 * kl * kr / (kl + kr) / h**2 * (ul - ur)
            pad = [(0, 0)] * len(shape)
            out = out + jnp.pad(flux, [(0, 1) if a == axis else p for a, p in enumerate(pad)])
            out = out - jnp.pad(flux, [(1, 0) if a == axis else p for a, p in enumerate(pad)])
            edge = jnp.zeros(m).at[0].set(1.0).at[-1].set(1.0)
            edge = edge.reshape([m if a == axis else 1 for a in range(len(shape))])
            out = out + 2 * k / h**2 * edge * u
        return out.ravel()

    return matvec


def convection_matvec(shape, peclet):
    """The gallery's convection–diffusion (rotating field, θ = log-diffusivity), in JAX."""
    diffusion = fv_diffusion(shape, 1.0 / peclet)
    C = upwind_stencil(shape, "rotating").assemble().tocoo()
    rows, cols, vals = (jnp.asarray(a) for a in (C.row, C.col, C.data))
    n = shape[0] * shape[1]

    def matvec(theta, x):
        return diffusion(theta, x) + jax.ops.segment_sum(vals * x[cols], rows, num_segments=n)

    return matvec


def misfit_model(model_fn, *args, **kwargs):
    """A gallery model with J = ½‖x − d‖², d fixed, and that J in JAX."""
    probe = model_fn(*args, **kwargs)
    d = np.random.default_rng(3).standard_normal(probe.n)
    model = model_fn(*args, objective=ka.LeastSquaresMisfit(None, d), **kwargs)
    return model, lambda x: 0.5 * jnp.sum((x - jnp.asarray(d)) ** 2)


def fv_entries(shape, scale=1.0):
    """The entries of :func:`fv_diffusion`'s matrix: ``(rows, cols, values)``, ``values(θ)``
    in JAX, one entry per face and cell contribution (repeated positions are summed)."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    rows, cols, parts = [], [], []
    for axis, m in enumerate(shape):
        left = jax.lax.slice_in_dim(index, 0, m - 1, axis=axis).ravel()
        right = jax.lax.slice_in_dim(index, 1, m, axis=axis).ravel()
        edges = np.concatenate([np.take(index, [0], axis=axis).ravel(),
                                np.take(index, [m - 1], axis=axis).ravel()])
        rows += [left, right, left, right, edges]
        cols += [left, right, right, left, edges]
        parts.append((np.asarray(left), np.asarray(right), edges, m))

    def values(theta):
        k = scale * jnp.exp(theta)
        out = []
        for (left, right, edges, m) in parts:
            h2 = (1.0 / m) ** 2
            T = 2 * k[left] * k[right] / (k[left] + k[right]) / h2
            out += [T, T, -T, -T, 2 * k[edges] / h2]
        return jnp.concatenate(out)

    return np.concatenate([np.asarray(r) for r in rows]), np.concatenate(
        [np.asarray(c) for c in cols]), values


@pytest.fixture(autouse=True)
def fresh_cache():
    kj.clear_cache()
    yield
    kj.clear_cache()


def phase_counter():
    counts: Counter = Counter()

    def monitor(phase, iteration, rnorm):
        counts[phase] = max(counts[phase], iteration)

    return counts, monitor


# -- gradients ----------------------------------------------------------------------------------
def test_matvec_matches_the_gallery():
    model = gallery.diffusion_2d(7, 5)
    x = np.random.default_rng(0).standard_normal(model.n)
    ours = fv_diffusion((7, 5))(jnp.asarray(model.theta), jnp.asarray(x))
    np.testing.assert_allclose(ours, model.problem.matvec(model.theta, x), rtol=1e-13)


def test_gradient_equals_the_library_and_the_dense_reference():
    model, J = misfit_model(gallery.diffusion_2d, 8, 6)
    matvec, b = fv_diffusion((8, 6)), jnp.asarray(model.problem.b(model.theta))

    def objective(theta):
        return J(kj.linear_solve(matvec, theta, b, structure="spd", rtol=RTOL))

    value, grad = jax.value_and_grad(objective)(jnp.asarray(model.theta))
    library = ka.AdjointSolver(model.problem, rtol=RTOL).gradient(model.theta)
    reference = dense_reference(model, model.theta)
    assert relative_error(grad, library.gradient) < 1e-8
    assert relative_error(grad, reference.gradient) < 1e-8
    assert abs(float(value) - reference.objective) < 1e-10 * abs(reference.objective)


def test_check_grads_forward_and_reverse_under_jit():
    matvec = fv_diffusion((5, 4))
    theta0 = jnp.asarray(gallery.diffusion_2d(5, 4).theta)
    b = jnp.linspace(1.0, 2.0, 20)

    @jax.jit
    def f(theta):
        return kj.linear_solve(matvec, theta, b, structure="spd", rtol=RTOL)

    check_grads(f, (theta0,), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)


def test_jit_gives_the_same_gradient_and_reuses_the_set_up():
    model, J = misfit_model(gallery.diffusion_2d, 8, 6)
    matvec, b = fv_diffusion((8, 6)), jnp.asarray(model.problem.b(model.theta))
    counts, monitor = phase_counter()

    def objective(theta):
        return J(kj.linear_solve(matvec, theta, b, structure="spd", rtol=RTOL,
                                 monitor=monitor))

    eager = jax.grad(objective)(jnp.asarray(model.theta))
    compiled = jax.jit(jax.grad(objective))
    np.testing.assert_allclose(compiled(jnp.asarray(model.theta)), eager, rtol=1e-9)
    compiled(jnp.asarray(model.theta) + 0.01)  # a new θ: same solver, its set-up kept
    assert set(counts) == {"primal", "adjoint"}


def test_rhs_depending_on_theta():
    """Convection–diffusion with θ = [log-diffusivity, sources]: b = θ[N:] through JAX."""
    model, J = misfit_model(gallery.convection_diffusion_2d, 6, 5, peclet=10.0)
    n = model.n
    matvec = convection_matvec((6, 5), 10.0)

    def objective(theta):
        return J(kj.linear_solve(lambda th, x: matvec(th[:n], x), theta, theta[n:], rtol=RTOL))

    grad = jax.grad(objective)(jnp.asarray(model.theta))
    library = ka.AdjointSolver(model.problem, rtol=RTOL).gradient(model.theta)
    assert relative_error(grad, library.gradient) < 1e-8
    assert relative_error(grad, dense_reference(model, model.theta).gradient) < 1e-8


def test_forward_mode_is_one_tangent_solve():
    model, J = misfit_model(gallery.diffusion_2d, 8, 6)
    matvec, b = fv_diffusion((8, 6)), jnp.asarray(model.problem.b(model.theta))
    solves: list[str] = []

    def monitor(phase, iteration, rnorm):
        if iteration == 0:
            solves.append(phase)

    def objective(theta):
        return J(kj.linear_solve(matvec, theta, b, structure="spd", rtol=RTOL,
                                 monitor=monitor))

    dtheta = np.random.default_rng(1).standard_normal(model.n_params)
    value, derivative = jax.jvp(objective, (jnp.asarray(model.theta),), (jnp.asarray(dtheta),))
    assert solves == ["primal", "primal"]  # the primal solve, then the tangent one (with M)
    library = ka.AdjointSolver(model.problem, rtol=RTOL).gradient(model.theta)
    assert abs(float(derivative) - library.gradient @ dtheta) < 1e-8 * abs(
        library.gradient @ dtheta)


def test_nonsymmetric_adjoint_uses_the_transposed_amg():
    """Péclet 100: GMRES with AMG; the adjoint solve, with Mᵀ, takes about the primal's
    iterations, and the gradient equals the library's."""
    shape, peclet = (24, 24), 100.0
    model, J = misfit_model(gallery.convection_diffusion_2d, *shape, peclet=peclet,
                            parameters="diffusivity")
    matvec = convection_matvec(shape, peclet)
    rows, cols, diffusion_values = fv_entries(shape, 1.0 / peclet)
    C = upwind_stencil(shape, "rotating").assemble().tocoo()
    rows, cols = np.concatenate([rows, C.row]), np.concatenate([cols, C.col])

    def values(theta):
        return jnp.concatenate([diffusion_values(theta), jnp.asarray(C.data)])

    counts, monitor = phase_counter()
    b = jnp.asarray(model.problem.b(model.theta))

    def objective(theta):
        return J(kj.linear_solve(matvec, theta, b, values=values, pattern=(rows, cols),
                                 rtol=1e-10, monitor=monitor))

    grad = jax.grad(objective)(jnp.asarray(model.theta))
    library = ka.AdjointSolver(model.problem, rtol=1e-10).gradient(model.theta)
    assert relative_error(grad, library.gradient) < 1e-7
    assert counts["primal"] >= 3
    assert counts["adjoint"] <= counts["primal"] + 2, counts


def test_vmap_over_right_hand_sides_shares_the_set_up():
    model = gallery.diffusion_2d(6, 5)
    matvec, theta = fv_diffusion((6, 5)), jnp.asarray(model.theta)
    B = jnp.asarray(np.random.default_rng(2).standard_normal((3, model.n)))
    rows, cols, values = fv_entries((6, 5))
    A = model.problem.assemble(model.theta).toarray()

    def solve(b):
        return kj.linear_solve(matvec, theta, b, structure="spd", rtol=RTOL, values=values,
                               pattern=(rows, cols))

    X = jax.vmap(solve)(B)
    np.testing.assert_allclose(X, np.linalg.solve(A, np.asarray(B).T).T, rtol=1e-9)
    grads = jax.vmap(jax.grad(lambda b: solve(b).sum()))(B)  # each row: A⁻ᵀ 1
    np.testing.assert_allclose(grads[0], np.linalg.solve(A.T, np.ones(model.n)),
                               rtol=1e-9)


def test_assembled_solve_matches_the_matrix_free_one():
    model, J = misfit_model(gallery.diffusion_2d, 6, 5)
    rows, cols, values = fv_entries((6, 5))
    b = jnp.asarray(model.problem.b(model.theta))
    g_assembled = jax.grad(lambda th: J(kj.assembled_solve(
        values, (rows, cols), th, b, structure="spd", rtol=RTOL)))(jnp.asarray(model.theta))
    reference = dense_reference(model, model.theta)
    assert relative_error(g_assembled, reference.gradient) < 1e-8


def test_operator_passes_the_library_checks():
    """The JAX-derived transpose, VJP and JVP pass check_problem's dot and derivative tests."""
    model = gallery.diffusion_2d(6, 5)
    op = kj.operator(fv_diffusion((6, 5)), n=model.n)  # general: rmatvec by linear_transpose
    problem = ka.AdjointProblem(op, model.problem.rhs, model.problem.objective,
                                n_params=model.n_params)
    report = ka.verify.check_problem(problem, model.theta, rng=0)
    assert report.passed, report.summary()
    library = ka.AdjointSolver(problem, rtol=RTOL).gradient(model.theta)
    assert relative_error(library.gradient, dense_reference(model, model.theta).gradient) < 1e-8


# -- bad input ---------------------------------------------------------------------------------
def test_float32_is_refused():
    theta32 = jnp.ones(4, dtype=jnp.float32)
    with pytest.raises(ka.InputError, match="theta: expected dtype float64, got float32"):
        kj.linear_solve(lambda th, x: th * x, theta32, jnp.ones(4))


def test_a_matvec_changing_the_shape_is_named():
    with pytest.raises(ka.CallbackError, match=r"matvec: expected an output of shape \(4,\)"):
        kj.linear_solve(lambda th, x: jnp.concatenate([th * x, x]), jnp.ones(4), jnp.ones(4))


def test_a_nonlinear_matvec_is_refused():
    with pytest.raises(ka.CallbackError, match="matvec: is not linear in x"):
        kj.linear_solve(lambda th, x: th * x * x, jnp.ones(4), jnp.ones(4))


def test_an_affine_matvec_fails_the_dot_test():
    op = kj.operator(lambda th, x: th * x + 1.0, n=4, structure="symmetric")
    problem = ka.AdjointProblem(op, np.ones(4), ka.LinearFunctional(np.ones(4)), n_params=4)
    report = ka.verify.check_problem(problem, np.ones(4), rng=0)
    assert not report.passed


def test_nonconvergence_raises_the_library_error_never_nan():
    slow = lambda th, x: th * x + jnp.roll(x, 1)  # noqa: E731
    b = jnp.arange(1.0, 41.0)
    with pytest.raises(ka.ConvergenceError) as info, kj.library_errors():
        jax.grad(lambda th: kj.linear_solve(slow, th, b, maxiter=3,
                                            preconditioner=None).sum())(jnp.ones(40))
    assert info.value.phase == "primal"
    compiled = jax.jit(lambda th: kj.linear_solve(slow, th, b, maxiter=3, preconditioner=None))
    with pytest.raises(jax.errors.JaxRuntimeError, match="ConvergenceError"):
        compiled(jnp.ones(40)).block_until_ready()
    with pytest.raises(ka.ConvergenceError), kj.library_errors():
        compiled(jnp.ones(40)).block_until_ready()


def test_unknown_options_are_refused():
    with pytest.raises(TypeError, match="raise_on_failure"):
        kj.linear_solve(lambda th, x: th * x, jnp.ones(3), jnp.ones(3), raise_on_failure=False)


def test_api_reference_documents_the_jax_package():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.rst").read_text()
    for name in kj.__all__:
        assert f":: krylov_adjoint.jax.{name}\n" in text, name

"""Gradient features tested once on every backend, through the registry of ``conftest.py``.

Each test takes a :class:`conftest.Case` (problem × method × preconditioner × backend) and
checks against the dense numpy reference; the same PETSc cases run on 2 and 3 ranks in
``test_registry_mpi.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    BACKENDS,
    GRADIENT_RTOL,
    PROBLEMS,
    check_gradient,
    dense_hessian_action,
    dense_reference,
    params,
    petsc_missing,
    relative_error,
    run,
    run_case,
    unchanged,
)

import krylov_adjoint as ka
from krylov_adjoint._transpose import transpose_mismatch


def nearby(theta: np.ndarray, k: int, seed: int = 7) -> np.ndarray:
    """θ moved by a small random step (k = 0 gives θ)."""
    step = np.random.default_rng(seed).standard_normal(theta.size)
    return theta + 1e-3 * k * step * max(1.0, float(np.abs(theta).max()))


@pytest.mark.parametrize("case", params())
def test_gradient_matches_dense_reference(case):
    with run_case(case) as r:
        model = r.model
        reference = dense_reference(model, model.theta)
        theta = np.array(r.local(model.theta), copy=True)
        fixed_b = [] if model.problem.rhs.depends_on_theta else [model.problem.rhs.value(None)]
        with unchanged(theta, model.theta, *fixed_b):
            result = r.solver.gradient(theta)
        check_gradient(result, r.whole_gradient(result), reference)


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["amg"]))
def test_directional_derivative_matches_gradient(case):
    with run_case(case) as r:
        model = r.model
        reference = dense_reference(model, model.theta)
        dtheta = np.random.default_rng(3).standard_normal(model.n_params)
        theta, direction = r.local(model.theta), np.array(r.local(dtheta), copy=True)
        with unchanged(direction):
            tangent = r.solver.directional_derivative(theta, direction)
        gradient = r.whole_gradient(r.solver.gradient(theta))
        scale = np.linalg.norm(reference.gradient) * np.linalg.norm(dtheta)
        assert tangent.tangent_solve.converged, tangent.tangent_solve
        assert abs(tangent.derivative - gradient @ dtheta) <= GRADIENT_RTOL * scale
        assert abs(tangent.derivative - reference.gradient @ dtheta) <= GRADIENT_RTOL * scale


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["amg"]))
def test_warm_start_gives_the_same_gradient(case):
    with run_case(case, warm_start=True) as warm, run_case(case, warm_start=False) as cold:
        theta0 = warm.model.theta
        theta1 = nearby(theta0, 1)
        warm.solver.gradient(warm.local(theta0))
        warmed = warm.solver.gradient(warm.local(theta1))
        fresh = cold.solver.gradient(cold.local(theta1))
        check_gradient(warmed, warm.whole_gradient(warmed), dense_reference(warm.model, theta1))
        assert relative_error(warm.whole_gradient(warmed),
                              cold.whole_gradient(fresh)) <= GRADIENT_RTOL
        warm.solver.reset_warm_start()
        again = warm.solver.gradient(warm.local(theta0))
        check_gradient(again, warm.whole_gradient(again), dense_reference(warm.model, theta0))


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["jacobi", "amg"]))
def test_preconditioner_set_up_once_over_nearby_theta(case):
    with run_case(case) as r:
        thetas = [nearby(r.model.theta, k) for k in range(3)]
        results = [r.solver.gradient(r.local(theta)) for theta in thetas]
        assert r.solver.setups == 1
        assert [res.preconditioner_rebuilt for res in results] == [True, False, False]
        check_gradient(results[-1], r.whole_gradient(results[-1]),
                       dense_reference(r.model, thetas[-1]))
        r.solver.rebuild_preconditioner()
        forced = r.solver.gradient(r.local(thetas[0]))
        assert r.solver.setups == 2 and forced.preconditioner_rebuilt
        check_gradient(forced, r.whole_gradient(forced), dense_reference(r.model, thetas[0]))


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=[pytest.mark.skip(reason=petsc_missing())] if
                 b != "serial" and petsc_missing() else []) for b in BACKENDS])
def test_declared_spd_but_nonsymmetric_operator_is_refused(backend):
    model = PROBLEMS["convection"].build()
    kind = "serial" if backend == "serial" else "petsc"
    with run(kind, model, structure="spd", preconditioner="none") as r:
        with pytest.raises(ka.CallbackError, match="not symmetric"):
            r.solver.gradient(r.local(model.theta))


def two_products(r, action: str, seed: int) -> tuple[np.ndarray, ...]:
    """Random v, w and the whole ``solver.<action>(θ, ·).product`` of each."""
    model = r.model
    v, w = np.random.default_rng(seed).standard_normal((2, model.n_params))
    act = getattr(r.solver, action)
    Hv, Hw = (r.whole(act(r.local(model.theta), np.array(r.local(d))).product,
                      model.n_params) for d in (v, w))
    return v, w, Hv, Hw


def asymmetry(v: np.ndarray, w: np.ndarray, Hv: np.ndarray, Hw: np.ndarray) -> float:
    """The dot-test measure of ⟨w, H v⟩ against ⟨v, H w⟩."""
    return transpose_mismatch(w @ Hv, v @ Hw, *(np.linalg.norm(a) for a in (Hv, w, v, Hw)))


@pytest.mark.parametrize("case", params())
def test_hessian_vector_product_matches_dense_reference(case):
    with run_case(case) as r:
        v, w, Hv, Hw = two_products(r, "hessian_vector_product", seed=5)
        assert relative_error(Hv, dense_hessian_action(r.model, r.model.theta, v)) <= 1e-6
        assert asymmetry(v, w, Hv, Hw) <= 1e-9


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["amg"]))
def test_gauss_newton_product_is_symmetric_positive_semidefinite(case):
    with run_case(case) as r:
        v, w, Gv, Gw = two_products(r, "gauss_newton_vector_product", seed=6)
        assert asymmetry(v, w, Gv, Gw) <= 1e-9
        assert v @ Gv >= -1e-12 * np.linalg.norm(Gv) * np.linalg.norm(v)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("build", [lambda: ka.gallery.heat_1d(30),
                                   lambda: ka.gallery.heat_1d(30, diffusivity="per_cell"),
                                   lambda: ka.gallery.diffusion_3d(4)],
                         ids=["heat_1d", "heat_1d-per-cell", "diffusion_3d"])
def test_hessian_of_the_other_gallery_problems(backend, build):
    if backend != "serial" and petsc_missing():
        pytest.skip(petsc_missing())
    model = build()
    v = np.random.default_rng(4).standard_normal(model.n_params)
    with run("serial" if backend == "serial" else "petsc", model) as r:
        product = r.solver.hessian_vector_product(r.local(model.theta),
                                                  np.array(r.local(v))).product
        Hv = r.whole(product, model.n_params)
    assert relative_error(Hv, dense_hessian_action(model, model.theta, v)) <= 1e-6

"""Jacobians of several outputs: K adjoint solves or P tangent solves, both backends."""

from __future__ import annotations

import numpy as np
import pytest

import krylov_adjoint as ka
from krylov_adjoint.gallery import convection_diffusion_2d, diffusion_2d


def outputs(n: int, n_params: int, k: int = 3, seed: int = 0) -> list[ka.Objective]:
    rng = np.random.default_rng(seed)
    out: list[ka.Objective] = [ka.LinearFunctional(rng.standard_normal(n)) for _ in range(k)]
    out.append(ka.LeastSquaresMisfit(None, rng.standard_normal(n))
               + ka.Tikhonov(0.5, theta_ref=rng.standard_normal(n_params)))
    return out


def dense_jacobian(model, theta, outs) -> np.ndarray:
    """Each row by the dense adjoint formula, with the model's explicit ∂A/∂θ and ∂b/∂θ."""
    p = model.problem
    n = p.n
    A = np.column_stack([p.operator.matvec(theta, e) for e in np.eye(n)])
    x = np.linalg.solve(A, np.asarray(p.rhs.value(theta), dtype=float))
    derivatives = model.derivative_matrices(theta)
    rows = []
    for J in outs:
        lam = np.linalg.solve(A.T, np.asarray(J.grad_x(x, theta), dtype=float))
        row = -np.array([lam @ (D @ x) for D in derivatives])
        if model.rhs_derivative is not None:
            row += lam @ model.rhs_derivative(theta)
        direct = J.grad_theta(x, theta)
        rows.append(row if direct is None else row + direct)
    return np.array(rows)


@pytest.mark.parametrize("build", [lambda: diffusion_2d(6, 5),
                                   lambda: convection_diffusion_2d(6, 5, peclet=20.0)],
                         ids=["diffusion", "convection"])
@pytest.mark.parametrize("mode", ["adjoint", "tangent"])
def test_jacobian_matches_the_dense_reference(build, mode):
    model = build()
    outs = outputs(model.n, model.n_params)
    solver = ka.AdjointSolver(model.problem, rtol=1e-12)
    result = solver.jacobian(model.theta, outs, mode=mode)
    reference = dense_jacobian(model, model.theta, outs)
    assert result.mode == mode and result.matrix.shape == reference.shape
    assert np.allclose(result.matrix, reference, rtol=1e-7,
                       atol=1e-9 * np.abs(reference).max())
    assert len(result.solves) == (len(outs) if mode == "adjoint" else model.n_params)
    assert all(s.converged for s in result.solves)


def test_the_two_modes_agree_and_auto_takes_the_fewer_solves():
    model = diffusion_2d(5, 4)
    outs = outputs(model.n, model.n_params, k=2)
    solver = ka.AdjointSolver(model.problem, rtol=1e-12)
    by_adjoint = solver.jacobian(model.theta, outs, mode="adjoint")
    by_tangent = solver.jacobian(model.theta, outs, mode="tangent")
    assert np.allclose(by_adjoint.matrix, by_tangent.matrix, rtol=1e-8,
                       atol=1e-10 * np.abs(by_adjoint.matrix).max())
    assert solver.jacobian(model.theta, outs).mode == "adjoint"  # K = 3 < P = 20
    many = outputs(model.n, model.n_params, k=model.n_params + 1)
    assert solver.jacobian(model.theta, many).mode == "tangent"
    assert solver.setups == 1


def test_bad_outputs_and_modes_are_refused():
    model = diffusion_2d(4, 3)
    solver = ka.AdjointSolver(model.problem)
    with pytest.raises(ka.InputError, match="outputs"):
        solver.jacobian(model.theta, [np.ones(model.n)])
    with pytest.raises(ka.InputError, match="mode"):
        solver.jacobian(model.theta, outputs(model.n, model.n_params), mode="forward")


@pytest.mark.parametrize("mode", ["adjoint", "tangent"])
def test_jacobian_on_one_petsc_rank_matches_the_serial_one(mode):
    pytest.importorskip("petsc4py")
    from krylov_adjoint.backends.petsc import PetscAdjointSolver
    from krylov_adjoint.backends.petsc import gallery as petsc_gallery

    dm = petsc_gallery.diffusion_2d(6, 5)
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal(dm.serial.n) for _ in range(3)]
    serial = ka.AdjointSolver(dm.serial.problem, rtol=1e-12).jacobian(
        dm.serial.theta, [ka.LinearFunctional(c) for c in weights], mode=mode)
    local = [ka.LinearFunctional(dm.grid.local_part(c)) for c in weights]
    with PetscAdjointSolver(dm.problem, rtol=1e-12) as solver:
        result = solver.jacobian(dm.theta, local, mode=mode)
        rows = np.array([dm.gather_theta(row, root=None) for row in result.matrix])
    assert np.allclose(rows, serial.matrix, rtol=1e-8, atol=1e-10 * np.abs(serial.matrix).max())
    assert np.allclose(result.values, serial.values, rtol=1e-10)


@pytest.mark.parametrize("backend", ["serial", "petsc"])
def test_the_jacobian_operator_applies_j_and_its_transpose(backend):
    model = convection_diffusion_2d(6, 5, peclet=20.0)
    outs = outputs(model.n, model.n_params)
    reference = dense_jacobian(model, model.theta, outs)
    v = np.random.default_rng(3).standard_normal(model.n_params)
    w = np.random.default_rng(4).standard_normal(len(outs))
    if backend == "serial":
        J = ka.AdjointSolver(model.problem, rtol=1e-12).jacobian_operator(model.theta, outs)
        Jv, JTw = J.matvec(v), J.rmatvec(w)
    else:
        pytest.importorskip("petsc4py")
        from krylov_adjoint.backends.petsc import PetscAdjointSolver
        from krylov_adjoint.backends.petsc import gallery as petsc_gallery

        dm = petsc_gallery.diffusion_2d(6, 5)
        model, outs = dm.serial, [ka.LinearFunctional(np.ones(dm.serial.n))]
        reference = dense_jacobian(model, model.theta, outs)
        v, w = np.random.default_rng(3).standard_normal(model.n_params), np.array([2.0])
        local = [ka.LinearFunctional(dm.grid.local_part(np.ones(model.n)))]
        with PetscAdjointSolver(dm.problem, rtol=1e-12) as solver:
            J = solver.jacobian_operator(dm.theta, local)
            Jv = J.matvec(dm.local_theta(v))
            JTw = dm.gather_theta(J.rmatvec(w), root=None)
    scale = np.abs(reference).max()
    assert np.allclose(Jv, reference @ v, rtol=1e-8, atol=1e-10 * scale * np.abs(v).sum())
    assert np.allclose(JTw, reference.T @ w, rtol=1e-8, atol=1e-10 * scale)

"""preconditioner="lu": one sparse factorisation for both solves, refactorised per new θ."""

from __future__ import annotations

import numpy as np
import pytest

import krylov_adjoint as ka
from krylov_adjoint.gallery import convection_diffusion_2d
from krylov_adjoint.precond import LUPreconditioner
from krylov_adjoint.verify import preconditioner_dot_test


def model():
    return convection_diffusion_2d(10, 8, peclet=500.0)


def test_lu_is_an_exact_transposable_preconditioner():
    m = model()
    A = m.problem.assemble(m.theta)
    M = LUPreconditioner(A)
    assert preconditioner_dot_test(M, rng=0).error <= 1e-12
    v = np.random.default_rng(0).standard_normal(A.shape[0])
    assert np.allclose(A @ M.apply(v), v) and np.allclose(A.T @ M.apply_transpose(v), v)


def test_both_solves_take_one_iteration_and_the_gradient_matches_gmres():
    m = model()
    result = ka.AdjointSolver(m.problem, preconditioner="lu", rtol=1e-10).gradient(m.theta)
    assert result.primal.iterations == 1 and result.adjoint_solve.iterations == 1
    reference = ka.AdjointSolver(m.problem, preconditioner="none", rtol=1e-12,
                                 maxiter=5000).gradient(m.theta)
    assert np.allclose(result.gradient, reference.gradient, rtol=1e-7,
                       atol=1e-9 * np.abs(reference.gradient).max())


def test_a_new_theta_refactorises_unless_asked_to_lag():
    m = model()
    fresh = ka.AdjointSolver(m.problem, preconditioner="lu", rtol=1e-10)
    lagged = ka.AdjointSolver(m.problem, preconditioner="lu", rtol=1e-10,
                              reuse_preconditioner=True)
    for solver in (fresh, lagged):
        solver.gradient(m.theta)
        solver.gradient(m.theta + 0.05)
    assert fresh.setups == 2 and lagged.setups == 1
    assert fresh.gradient(m.theta + 0.1).primal.iterations == 1


def test_a_singular_matrix_and_unknown_options_are_refused_clearly():
    with pytest.raises(ValueError, match="singular"):
        LUPreconditioner(np.zeros((3, 3)))
    m = model()
    with pytest.raises(ValueError, match="permc"):
        ka.AdjointSolver(m.problem, preconditioner="lu",
                         preconditioner_options={"permc": "NATURAL"})


def test_lu_on_one_petsc_rank_matches_the_serial_gradient():
    pytest.importorskip("petsc4py")
    from krylov_adjoint.backends.petsc import PetscAdjointSolver
    from krylov_adjoint.backends.petsc import gallery as petsc_gallery

    dm = petsc_gallery.convection_diffusion_2d(10, 8, peclet=500.0)
    serial = ka.AdjointSolver(dm.serial.problem, preconditioner="lu", rtol=1e-10)
    expected = serial.gradient(dm.serial.theta).gradient
    with PetscAdjointSolver(dm.problem, preconditioner="lu", rtol=1e-10) as solver:
        result = solver.gradient(dm.theta)
        assert result.primal.iterations <= 2 and solver.reuse.reuse is False
        gradient = dm.gather_theta(np.asarray(result.gradient), root=None)
    assert np.allclose(gradient, expected, rtol=1e-7, atol=1e-9 * np.abs(expected).max())

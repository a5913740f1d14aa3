"""The engine's solves of a given right-hand side: the linear solve as a primitive.

``solve(θ, rhs)`` with M and ``solve_transpose(θ, rhs)`` with Mᵀ from the same set-up are what
the JAX and PyTorch primitives call; they are tested here on their own, on both backends.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import petsc_missing, run

from krylov_adjoint import gallery

BACKENDS = ["serial", pytest.param("petsc1", marks=pytest.mark.skipif(
    petsc_missing() is not None, reason=str(petsc_missing())))]


def as_array(v):
    return np.asarray(v.getArray() if hasattr(v, "getArray") else v, dtype=float).copy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_given_right_hand_sides_against_dense_solves(backend):
    model = gallery.convection_diffusion_2d(12, 10, peclet=100.0, parameters="diffusivity")
    A = model.problem.assemble(model.theta).toarray()
    rng = np.random.default_rng(0)
    b, g = rng.standard_normal(model.n), rng.standard_normal(model.n)
    with run(backend, model, rtol=1e-12, preconditioner="amg") as r:
        solver = r.solver
        primal = solver.solve(r.local(model.theta), r.local(b))
        adjoint = solver.solve_transpose(r.local(model.theta), r.local(g))
        assert solver.setups == 1  # one set-up: the transpose applies Mᵀ from it
    np.testing.assert_allclose(as_array(primal.x), np.linalg.solve(A, b), rtol=1e-9)
    np.testing.assert_allclose(as_array(adjoint.x), np.linalg.solve(A.T, g), rtol=1e-9)
    assert adjoint.iterations <= primal.iterations + 2


def test_warm_start_only_from_the_same_right_hand_side():
    model = gallery.diffusion_2d(16, 12)
    rng = np.random.default_rng(1)
    b, c = rng.standard_normal(model.n), rng.standard_normal(model.n)
    with run("serial", model, rtol=1e-10) as r:
        solver = r.solver
        first = solver.solve(model.theta, b).iterations
        assert solver.solve(model.theta, b).iterations == 0  # its own solution: done
        assert solver.solve(model.theta, c).iterations > 0  # another b: from zero
        assert solver.solve(model.theta + 0.01, c).iterations < first
        lam = solver.solve_transpose(model.theta, b).iterations
        assert solver.solve_transpose(model.theta, b).iterations == 0 < lam


def test_a_bad_right_hand_side_is_named():
    model = gallery.diffusion_2d(4, 3)
    with run("serial", model) as r:
        solver = r.solver
        with pytest.raises(ValueError, match="primal right-hand side: expected shape"):
            solver.solve(model.theta, np.ones(5))
        with pytest.raises(ValueError, match="adjoint right-hand side: expected dtype float64"):
            solver.solve_transpose(model.theta, np.ones(12, dtype=np.float32))

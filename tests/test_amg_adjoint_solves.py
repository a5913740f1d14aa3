"""Adjoint Krylov solves preconditioned with the transposed AMG cycle."""

from __future__ import annotations

import numpy as np
import pytest

from krylov_adjoint.gallery import convection_diffusion_matrix
from krylov_adjoint.krylov import solve
from krylov_adjoint.precond.amg import AMGPreconditioner


@pytest.mark.parametrize("method", ["sa", "rs", "air"])
def test_transposed_cycle_preconditions_the_adjoint_like_the_primal(method: str) -> None:
    A = convection_diffusion_matrix(48, 100.0)
    rng = np.random.default_rng(0)
    b, g = rng.standard_normal(A.shape[0]), rng.standard_normal(A.shape[0])
    M = AMGPreconditioner(A, method=method)
    primal = solve(A, b, M=M, rtol=1e-8, restart=50, maxiter=200)
    adjoint = solve(A.T, g, M=M.T, rtol=1e-8, restart=50, maxiter=200)
    assert primal.converged and adjoint.converged
    assert adjoint.iterations <= 1.1 * primal.iterations + 1
    # The usual mistake: M (pyamg's aspreconditioner has no rmatvec) for the adjoint.
    wrong = solve(A.T, g, M=M, rtol=1e-8, restart=50, maxiter=3 * primal.iterations + 10)
    assert not wrong.converged

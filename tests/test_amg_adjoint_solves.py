"""Adjoint Krylov solves preconditioned with the transposed AMG cycle."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from krylov_adjoint.krylov import solve
from krylov_adjoint.precond.amg import AMGPreconditioner


def convection_diffusion(m: int, peclet: float) -> sp.csr_array:
    h = 1.0 / (m + 1)
    eye = sp.eye_array(m, format="csr")
    second = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m)) / h**2
    upwind = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(m, m)) / h
    A = sp.kron(eye, second) + sp.kron(second, eye)
    return sp.csr_array(A + peclet * (sp.kron(eye, upwind) + 0.5 * sp.kron(upwind, eye)))


@pytest.mark.parametrize("method", ["sa", "rs", "air"])
def test_transposed_cycle_preconditions_the_adjoint_like_the_primal(method: str) -> None:
    A = convection_diffusion(48, 100.0)
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

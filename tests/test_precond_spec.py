"""Preconditioner specifications given to AdjointSolver, and preconditioner symmetry."""

from __future__ import annotations

import numpy as np
import pytest

import krylov_adjoint as ka
from krylov_adjoint.gallery import diffusion_2d
from krylov_adjoint.krylov import solve
from krylov_adjoint.precond import ILUPreconditioner


# -- E. ILU is not a symmetric map ------------------------------------------------------------
def test_ilu_declares_itself_nonsymmetric_and_cg_refuses_it_with_the_reason():
    model = diffusion_2d(8)
    M = ILUPreconditioner(model.problem.assemble(model.theta))
    assert M.is_symmetric is False and "spilu" in M.asymmetry
    with pytest.raises(ValueError, match="conjugate gradients need a symmetric preconditioner.*"
                                         "spilu"):
        solve(model.problem.assemble(model.theta), np.ones(model.n), method="cg", M=M)


def test_auto_method_with_ilu_on_an_spd_problem_uses_gmres_and_converges():
    model = diffusion_2d(64)  # CG with this ILU stops at maxiter without converging
    solver = ka.AdjointSolver(model.problem, preconditioner="ilu", maxiter=300, rtol=1e-8)
    result = solver.gradient(model.theta)
    assert result.primal.method == result.adjoint_solve.method == "gmres"
    assert result.primal.converged and result.adjoint_solve.converged
    assert result.primal.iterations < 100

"""Whether an AMG cycle is a symmetric map, and conjugate gradients refusing one that is not.

``is_symmetric`` is read off the set-up (symmetric A, V/W cycle, R = Pᵀ, post-smoother the
transpose of the pre-smoother, symmetric coarse solve); each claim is checked numerically:
True means ⟨Mu, v⟩ = ⟨u, Mv⟩ to rounding, False that the two differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pyamg.gallery import linear_elasticity, poisson

import krylov_adjoint as ka
from krylov_adjoint import InputError
from krylov_adjoint.krylov import solve
from krylov_adjoint.precond import AMGPreconditioner, JacobiPreconditioner
from krylov_adjoint.verify import dot_test

FORWARD = ("gauss_seidel", {"sweep": "forward"})
BACKWARD = ("gauss_seidel", {"sweep": "backward"})

SYMMETRIC = {
    "sa-V": {},
    "sa-W": {"cycle": "W"},
    "rs-V": {"method": "rs"},
    "forward-then-backward": {"presmoother": FORWARD, "postsmoother": BACKWARD},
    "jacobi": {"presmoother": "jacobi", "postsmoother": "jacobi"},
    "chebyshev": {"presmoother": "chebyshev", "postsmoother": "chebyshev"},
    "coarse-lu": {"coarse_solver": "lu"},
    "coarse-symmetric-gs": {"coarse_solver": ("gauss_seidel", {"sweep": "symmetric"})},
}

NOT_SYMMETRIC = {
    "F-cycle": ({"cycle": "F"}, "F-cycle"),
    "air": ({"method": "air"}, "restriction is not Pᵀ"),
    "forward-twice": ({"presmoother": FORWARD, "postsmoother": FORWARD}, "post-smoother"),
    "coarse-forward-gs": ({"coarse_solver": ("gauss_seidel", {"iterations": 1})},
                          "coarse solver"),
}


@pytest.fixture(scope="module")
def poisson_2d() -> sp.csr_array:
    return sp.csr_array(poisson((40, 40), format="csr"))


def asymmetry(M: AMGPreconditioner, seed: int = 0) -> float:
    """The dot test of M against itself: ⟨Mu, v⟩ against ⟨u, Mv⟩, one random pair."""
    return dot_test(M.apply, M.apply, M.shape, rng=seed, trials=1).error


@pytest.mark.parametrize("name", sorted(SYMMETRIC))
def test_claimed_symmetric_cycles_are_symmetric(poisson_2d, name):
    M = AMGPreconditioner(poisson_2d, **SYMMETRIC[name])
    assert M.levels > 2
    assert M.is_symmetric is True and M.asymmetry == ""
    assert asymmetry(M) <= 1e-12
    assert M.T.is_symmetric is True


@pytest.mark.parametrize("name", sorted(NOT_SYMMETRIC))
def test_claimed_nonsymmetric_cycles_are_not(poisson_2d, name):
    options, reason = NOT_SYMMETRIC[name]
    M = AMGPreconditioner(poisson_2d, **options)
    assert M.is_symmetric is False
    assert reason in M.asymmetry
    assert asymmetry(M) > 1e-8


def test_nonsymmetric_matrix_gives_a_nonsymmetric_cycle(poisson_2d):
    A = poisson_2d + sp.diags_array(np.linspace(0.0, 1.0, poisson_2d.shape[0] - 1), offsets=1)
    M = AMGPreconditioner(A)
    assert M.is_symmetric is False and "A is not symmetric" in M.asymmetry


def test_normal_equation_sweeps_are_not_judged(poisson_2d):
    # a forward column sweep transposes into a backward row sweep: symmetric in fact
    M = AMGPreconditioner(poisson_2d, presmoother="gauss_seidel_nr",
                          postsmoother=("gauss_seidel_ne", {"sweep": "backward"}))
    assert asymmetry(M) <= 1e-12
    assert M.is_symmetric is None  # holds a matrix: not compared, so CG is not refused


def test_cg_refuses_a_preconditioner_known_not_to_be_symmetric(poisson_2d):
    b = np.ones(poisson_2d.shape[0])
    with pytest.raises(InputError, match="F-cycle") as info:
        solve(poisson_2d, b, method="cg", M=AMGPreconditioner(poisson_2d, cycle="F"))
    assert "gmres" in str(info.value)
    assert solve(poisson_2d, b, method="gmres", M=AMGPreconditioner(poisson_2d, cycle="F"),
                 rtol=1e-10).converged
    assert solve(poisson_2d, b, method="cg", M=JacobiPreconditioner(poisson_2d),
                 rtol=1e-10).converged


def _spd_problem(A: sp.csr_array) -> ka.AdjointProblem:
    n = A.shape[0]
    op = ka.ParametricOperator(lambda th, x: A @ x + th * x, n=n, structure="spd",
                               vjp=lambda th, x, lam: lam * x,
                               assemble=lambda th: A + sp.diags_array(th))
    return ka.AdjointProblem(op, np.ones(n), ka.LinearFunctional(np.ones(n)), n_params=n)


def test_auto_method_takes_gmres_for_an_f_cycle_and_cg_otherwise(poisson_2d):
    problem = _spd_problem(poisson_2d)
    theta = np.full(poisson_2d.shape[0], 0.1)
    f_cycle = ka.AdjointSolver(problem, preconditioner_options={"cycle": "F"}, rtol=1e-10)
    result = f_cycle.gradient(theta)
    assert result.primal.method == "gmres" and result.adjoint_solve.method == "gmres"
    v_cycle = ka.AdjointSolver(problem, rtol=1e-10).gradient(theta)
    assert v_cycle.primal.method == "cg" and v_cycle.adjoint_solve.method == "cg"
    np.testing.assert_allclose(result.gradient, v_cycle.gradient, rtol=1e-6)
    explicit = ka.AdjointSolver(problem, method="cg", preconditioner_options={"cycle": "F"})
    with pytest.raises(InputError, match="symmetric preconditioner"):
        explicit.gradient(theta)


def test_block_hierarchy_with_near_nullspace_is_symmetric():
    A, B = linear_elasticity((12, 12), format="bsr")
    M = AMGPreconditioner(A, near_nullspace=B, symmetric=True)
    assert M.levels > 1 and M.hierarchy.levels[0].P.format == "bsr"
    assert M.is_symmetric is True
    assert asymmetry(M) <= 1e-12

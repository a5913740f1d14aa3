"""The library's own verification report passes on problems built from each adapter."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint.adapters import affine_operator, affine_rhs, element_operator, from_assembly
from krylov_adjoint.verify import check_problem

N = 16


def affine_problem() -> tuple[ka.AdjointProblem, np.ndarray]:
    L = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(N, N), format="csr")
    terms = [sp.csr_matrix(([1.0, 0.3], ([k, k], [k, (k + 1) % N])), shape=(N, N))
             for k in range(N)]
    op = affine_operator(L, terms)  # nonsymmetric: GMRES and a true transpose
    rhs = affine_rhs(np.ones(N), sp.identity(N) * 0.5)
    J = ka.LeastSquaresMisfit(None, np.linspace(0, 1, N)) + ka.Tikhonov(1e-2)
    return ka.AdjointProblem(op, rhs, J, n_params=N), np.full(N, 1.2)


def assembly_problem(vjp_error: float = 0.0) -> tuple[ka.AdjointProblem, np.ndarray]:
    D = sp.diags([-1.0, 1.0], [0, 1], shape=(N - 1, N), format="csr")

    def assemble(theta):
        return sp.csr_matrix(D.T @ sp.diags(np.exp(theta)) @ D + 0.05 * sp.identity(N))

    template = assemble(np.zeros(N - 1))

    def assembly_vjp(theta, values_bar):
        bar = sp.csr_matrix((values_bar, template.indices, template.indptr), shape=(N, N))
        out = np.exp(theta) * np.asarray((D @ bar).multiply(D).sum(axis=1)).ravel()
        return (1.0 + vjp_error) * out

    def assembly_jvp(theta, dtheta):
        return _aligned((D.T @ sp.diags(np.exp(theta) * dtheta) @ D).toarray(), template)

    op = from_assembly(assemble, assembly_vjp, np.zeros(N - 1), structure="spd",
                       assembly_jvp=assembly_jvp)
    J = ka.LeastSquaresMisfit(None, np.linspace(0.0, 5.0, N))
    b = np.sin(np.arange(N))  # not a constant: constants are in the kernel of D
    return ka.AdjointProblem(op, b, J, n_params=N - 1), np.linspace(-0.5, 0.5, N - 1)


def _aligned(dense: np.ndarray, template: sp.csr_matrix) -> np.ndarray:
    """Entries of a dense matrix at the stored positions of ``template``, in its order."""
    rows = np.repeat(np.arange(N), np.diff(template.indptr))
    return dense[rows, template.indices]


def element_problem() -> tuple[ka.AdjointProblem, np.ndarray]:
    Ke = np.array([[1.0, -1.0], [-1.0, 1.0]])
    conn = np.stack([np.arange(N - 1), np.arange(1, N)], axis=1)
    op = element_operator(Ke, conn, N, scaling="simp", simp_eps=1e-3, dirichlet_dofs=[0],
                          structure="spd")
    rhs = op.dirichlet_rhs(np.ones(N))
    return (ka.AdjointProblem(op, rhs, ka.LinearFunctional(np.ones(N)), n_params=N - 1),
            np.linspace(0.3, 0.9, N - 1))


@pytest.mark.parametrize("build", [affine_problem, assembly_problem, element_problem],
                         ids=["affine", "from_assembly", "elements"])
def test_check_problem_passes(build):
    problem, theta = build()
    report = check_problem(problem, theta, preconditioner="ilu", rng=0)
    assert report.passed, report.summary()


def test_check_problem_names_a_wrong_assembly_vjp():
    problem, theta = assembly_problem(vjp_error=0.01)
    report = check_problem(problem, theta, rng=0, taylor=False)
    assert not report.passed
    assert "operator.vjp" in report.summary()

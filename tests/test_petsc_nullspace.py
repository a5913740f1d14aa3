"""Singular systems on PETSc under mpirun: MatSetNullSpace / MatSetTransposeNullSpace on the
shell operators, the near-nullspace for GAMG, CG + GAMG on a pure-Neumann problem."""

from __future__ import annotations

import pytest
from test_petsc_mpi import run_mpi

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("nranks", [1, 2])
def test_pure_neumann_on_petsc(nranks):
    records, _, _ = run_mpi("nullspace.py", nranks, timeout=150)
    r = records[0]
    for other in records[1:]:
        assert other["iterations"] == r["iterations"]
        assert other["inconsistent_error"] == r["inconsistent_error"]
        assert other["not_null_error"] == r["not_null_error"]
    assert r["pc_type"] == "gamg" and r["has_nullspaces"] and r["near_nullspace"]
    assert r["reasons"] == ["CONVERGED_RTOL", "CONVERGED_RTOL"], r
    assert max(r["iterations"]) < 40, r
    assert r["gradient_error"] <= 1e-9 and r["objective_error"] <= 1e-10, r
    assert r["x_error"] <= 1e-9 and r["x_mean"] <= 1e-12, r
    assert r["taylor_passed"] and 1.9 <= r["taylor_min_rate"] <= 2.1, r
    assert r["inconsistent_error"].startswith("rhs: is inconsistent with the singular A(θ)")
    assert "8.40e-02 of ‖b‖" in r["inconsistent_error"]
    assert r["projected_x_error"] <= 1e-9 and r["projected_gradient_error"] <= 1e-9, r
    assert r["not_null_error"].startswith("operator.nullspace: vector 0 is not in the "
                                          "nullspace of A(θ)")


@pytest.mark.parametrize("rhs", ["check", "project"])
def test_theta_dependent_nullspace_on_petsc_one_rank(rhs):
    """The pseudo-inverse's extra gradient terms on the PETSc backend (one rank, in process)
    against the serial backend on the same callbacks."""
    import numpy as np
    from test_nullspace import rotating_nullspace_problem

    from krylov_adjoint import AdjointSolver
    from krylov_adjoint.backends.petsc import (
        DistributedOperator,
        DistributedProblem,
        PetscAdjointSolver,
    )

    serial = rotating_nullspace_problem(rhs)
    op = serial.operator
    distributed = DistributedOperator(op._matvec, n=serial.n, rmatvec=op._rmatvec, vjp=op._vjp,
                                      assemble=op._assemble, nullspace=op.nullspace)
    problem = DistributedProblem(distributed, serial.rhs, serial.objective, n_params=2)
    theta = np.array([0.4, -0.7])
    reference = AdjointSolver(serial, preconditioner="none", rtol=1e-13).gradient(theta)
    with PetscAdjointSolver(problem, preconditioner="none", method="gmres",
                            rtol=1e-13) as solver:
        result = solver.gradient(theta)
        gradient = np.asarray(result.gradient)
    assert np.allclose(gradient, reference.gradient, rtol=1e-8, atol=1e-10)
    assert np.allclose(result.x, reference.x, atol=1e-10)

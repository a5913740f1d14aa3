"""The registry's PETSc cases on 2 and 3 ranks, under mpirun, against the dense reference."""

from __future__ import annotations

import pytest
from conftest import GRADIENT_RTOL, mpi_cases
from test_petsc_mpi import run_mpi

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def records(request):
    found, _, _ = run_mpi("registry.py", request.param, timeout=300)
    return found


def test_every_rank_reports_the_same_numbers(records):
    for other in records[1:]:
        assert other["cases"] == records[0]["cases"]
        assert other["reuse"] == records[0]["reuse"]


def test_gradients_match_dense_reference(records):
    r = records[0]["cases"]
    assert sorted(r) == sorted(f"{c.problem}-{c.method}-{c.preconditioner}"
                               for c in mpi_cases())
    for key, numbers in r.items():
        assert "error" not in numbers, (key, numbers)
        assert numbers["converged"] == [True, True], (key, numbers)
        assert numbers["gradient_error"] <= GRADIENT_RTOL, (key, numbers)
        assert numbers["objective_error"] <= GRADIENT_RTOL, (key, numbers)
        assert numbers["theta_unchanged"], (key, numbers)


def test_preconditioner_reuse_and_directional_derivative(records):
    for name, r in records[0]["reuse"].items():
        assert r["rebuilt"] == [True, False, False] and r["setups"] == 1, (name, r)
        assert r["setups_after_rebuild"] == 2 and r["forced_rebuilt"], (name, r)
        assert r["forced_error"] <= GRADIENT_RTOL, (name, r)
        assert r["tangent_error"] <= GRADIENT_RTOL, (name, r)


def test_declared_spd_but_nonsymmetric_operator_is_refused_on_every_rank(records):
    for r in records:
        assert r["refused"].startswith("CallbackError") and "not symmetric" in r["refused"], r


def test_hessian_actions_match_the_dense_reference_and_the_serial_solver(records):
    for name, r in records[0]["hessian"].items():
        assert r["hessian_error"] <= GRADIENT_RTOL, (name, r)
        assert r["hessian_vs_serial"] <= 1e-8, (name, r)
        assert r["gauss_newton_vs_serial"] <= 1e-8, (name, r)
    for other in records[1:]:  # the distributed numbers are global: every rank agrees
        assert [r["hessian_error"] for r in other["hessian"].values()] == \
            [r["hessian_error"] for r in records[0]["hessian"].values()]


def test_newton_cg_distributed_follows_the_serial_iterates(records):
    for r in records:
        n = r["newton"]
        assert n["converged"] and n["iterations"][0] == n["iterations"][1], n
        assert n["theta_vs_serial"] <= 1e-8, n


def test_laplace_eigenvalues_distributed_match_the_serial_ones(records):
    for r in records:
        assert r["laplace"]["eigenvalues_vs_serial"] <= 1e-8, r["laplace"]
        assert r["laplace"]["eigenvalues"] == records[0]["laplace"]["eigenvalues"]


def test_lu_on_several_ranks_needs_a_parallel_direct_solver(records):
    for r in records:
        assert r["lu"] == "has a parallel direct solver" or (
            r["lu"].startswith("ValueError") and "parallel direct solver" in r["lu"]), r["lu"]


def test_jacobians_by_adjoint_and_tangent_solves_match_the_serial_one(records):
    for r in records:
        assert r["jacobian"]["adjoint"] <= 1e-8 and r["jacobian"]["tangent"] <= 1e-8, r


def test_the_certificate_holds_and_adaptive_gradients_meet_their_target(records):
    for name, c in records[0]["certificate"].items():
        assert all(0.5 <= ratio <= 2.0 for ratio in c["ratios"]), (name, c)
        assert c["adaptive_estimate"] <= 1e-4 and c["adaptive_error"] <= 2e-4, (name, c)
        assert c["adaptive_rtol"] > 1e-12, (name, c)  # looser than the fixed tolerance
    for other in records[1:]:
        assert other["certificate"] == records[0]["certificate"]

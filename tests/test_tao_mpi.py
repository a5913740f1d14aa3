"""TAO on adjoint gradients under mpirun: the scipy adapter's minimiser, options, failures."""

from __future__ import annotations

import pytest
from test_petsc_mpi import run_mpi

pytestmark = pytest.mark.mpi

METHODS = ("blmvm", "bncg", "lmvm", "bnls")
HISTORY_KEYS = ["adjoint_iterations", "elapsed", "gradient_norm", "iteration", "objective",
                "preconditioner_setups", "primal_iterations", "solves"]


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def records(request):
    found, _, _ = run_mpi("tao.py", request.param, timeout=420)
    return found


def test_tao_reaches_the_scipy_minimiser(records):
    for r in records:
        assert r["active_bounds"] > 0, r  # the bounds matter
        for method in METHODS:
            run = r[method]
            assert run["converged"] and run["type"] == method, (method, run)
            assert run["error_vs_scipy"] <= 1e-6, (method, run)
            assert run["prefix"] == "ka_", run


def test_history_has_one_scipy_style_record_per_iteration(records):
    for method in METHODS:
        run = records[0][method]
        assert run["history"] == run["iterations"], run
        assert run["history_keys"] == HISTORY_KEYS, run
        assert run["n_solves"] >= run["iterations"], run


def test_newton_uses_the_hessian_action(records):
    run = records[0]["bnls"]
    assert run["uses_hessian"] and run["iterations"] < records[0]["blmvm"]["iterations"], run


def test_one_rank_failing_inside_an_iteration_stops_every_rank_with_the_error(records):
    failing = min(1, len(records) - 1)
    for r in records:
        failure = r["failure"]
        assert failure["error"] == "CollectiveCallbackError", failure
        assert failure["rank"] == failing, failure
        assert "vjp broke inside an iteration" in failure["message"], failure
        assert failure["evaluations"] >= 1 and failure["history"] >= 0, failure


def test_tao_options_under_the_solver_prefix_win_over_the_code():
    found, _, _ = run_mpi("tao.py", 2, "-ka_tao_type", "bncg", "-ka_tao_max_it", "2",
                          timeout=300)
    for r in found:
        options = r["options"]
        assert options["type"] == "bncg" and options["iterations"] == 2, options
        assert options["history"] == 2, options

"""Many sources on 2 ranks under mpirun: the dense reference, and failures on one rank."""

from __future__ import annotations

import pytest
from test_petsc_mpi import run_mpi

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def records():
    found, _, _ = run_mpi("sources.py", 2, timeout=150)
    return found


def test_many_sources_match_the_dense_reference_on_two_ranks(records):
    for name, r in records[0]["cases"].items():
        assert r["converged"] and r["solves"] == "one_by_one", (name, r)
        assert r["gradient_error"] <= 1e-8, (name, r)
        assert r["objective_error"] <= 1e-8, (name, r)
        assert r["setups"] == 1, (name, r)  # one set-up for every source's two solves
        # each source warm-starts from its own last solution at a nearby θ
        assert sum(r["warm_primal_iterations"]) < sum(r["primal_iterations"]), (name, r)
    for other in records[1:]:  # global numbers: every rank agrees
        assert other["cases"] == records[0]["cases"]


def test_a_failure_on_one_rank_is_raised_on_every_rank_naming_the_source(records):
    for r in records:
        assert r["callback_failure"].startswith("CollectiveCallbackError"), r
        assert "no current on this rank" in r["callback_failure"], r
        assert "on rank 1 of 2 during the right-hand side of sources[2]" in \
            r["callback_failure"], r
        assert r["length_failure"].startswith("InputError"), r
        assert "sources.rhs" in r["length_failure"], r

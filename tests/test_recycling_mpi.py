"""PETSc gradients with recycled starts on 1 and 2 ranks, under mpirun."""

from __future__ import annotations

import pytest
from conftest import GRADIENT_RTOL, petsc_missing
from test_petsc_mpi import run_mpi

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(petsc_missing() is not None, reason=str(petsc_missing()))]


@pytest.fixture(scope="module", params=[1, 2], ids=lambda n: f"{n}ranks")
def records(request):
    found, _, _ = run_mpi("recycling.py", request.param, timeout=150)
    return found


def test_every_rank_reports_the_same_numbers(records):
    for other in records[1:]:
        assert other["cases"] == records[0]["cases"]


def test_gradients_with_recycling_equal_those_without_and_the_reference(records):
    for name, r in records[0]["cases"].items():
        assert r["vs_plain"] <= 1e-7, (name, r)
        assert r["vs_reference"] <= GRADIENT_RTOL, (name, r)
        assert r["saved_nonnegative"], (name, r)
        # the first solve has nothing to recycle; later ones combine up to 4 + 1 vectors
        assert r["dimensions"][0] == [0, 0], (name, r)
        assert all(0 < d <= 5 for pair in r["dimensions"][1:] for d in pair), (name, r)


def test_recycling_survives_a_preconditioner_set_up(records):
    for name, r in records[0]["cases"].items():
        rebuilt, dimension = r["after_rebuild"]
        assert rebuilt and dimension > 0, (name, r)
        assert r["after_rebuild_error"] <= GRADIENT_RTOL, (name, r)


def test_bad_recycle_is_refused_on_every_rank(records):
    for r in records:
        assert r["refused"].startswith("ValueError: recycle must be a whole number"), r

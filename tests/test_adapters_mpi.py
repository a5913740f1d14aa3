"""The distributed adapters under mpirun on 1, 2 and 3 ranks, against the serial adapters."""

from __future__ import annotations

import pytest
from test_petsc_mpi import run_mpi

pytestmark = pytest.mark.mpi

CASES = ("spd", "general", "dirichlet")


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda n: f"{n}ranks")
def assembled(request):
    records, _, _ = run_mpi("assembled.py", request.param, timeout=150)
    return records


def test_assembled_operator_gives_the_serial_from_assembly_gradient(assembled):
    for r in assembled:
        for name in CASES:
            numbers = r[name]
            assert numbers["gradient_error"] <= 1e-8, (name, numbers)
            assert numbers["objective_error"] <= 1e-8, (name, numbers)
            assert numbers["tangent_error"] <= 1e-8, (name, numbers)
            assert numbers["taylor_passed"], (name, numbers)
            assert numbers == {**assembled[0][name], "ghost_columns": numbers["ghost_columns"]}


def test_affine_operator_from_petsc_matrices_gives_the_serial_gradient(assembled):
    for r in assembled:
        assert r["affine"]["gradient_error"] <= 1e-8, r["affine"]
        assert r["affine"]["objective_error"] <= 1e-8, r["affine"]


def test_off_process_columns_are_read_through_ghosts(assembled):
    if len(assembled) > 1:
        assert all(r["spd"]["ghost_columns"] > 0 for r in assembled)
    else:
        assert assembled[0]["spd"]["ghost_columns"] == 0


def test_a_pattern_change_on_one_rank_is_one_collective_error_naming_it(assembled):
    failing = min(1, len(assembled) - 1)
    for r in assembled:
        error = r["pattern_change"]
        assert error["type"] == "CollectiveCallbackError", error
        assert error["rank"] == failing, error
        assert f"on rank {failing} of {len(assembled)}" in error["message"], error
        assert "sparsity pattern of A(θ) changed" in error["message"], error


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda n: f"{n}ranks")
def elements(request):
    records, _, _ = run_mpi("elements.py", request.param, timeout=200)
    return records


def test_element_operator_gives_the_serial_element_operator_gradient(elements):
    for r in elements:
        for name in ("simp_filter", "linear_per_element"):
            numbers = r[name]
            assert numbers["gradient_error"] <= 1e-8, (name, numbers)
            assert numbers["objective_error"] <= 1e-8, (name, numbers)
            assert numbers["tangent_error"] <= 1e-8, (name, numbers)
            assert numbers["taylor_passed"], (name, numbers)


def test_elements_split_with_a_rank_owning_none(elements):
    owned = [r["simp_filter"]["elements"] for r in elements]
    assert sum(owned) == 32
    if len(elements) == 3:
        assert owned[1] == 0 and elements[0]["simp_filter"]["ghost_dofs"] > 0, owned

"""Smoke test of scripts/bench_sources.py on a very small grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import script_module


@pytest.fixture(scope="module")
def bench():
    with script_module("bench_sources") as module:
        yield module


@pytest.mark.parametrize("smoother", ["gauss_seidel", "chebyshev"])
def test_main_writes_json(bench, tmp_path: Path, smoother: str) -> None:
    out = tmp_path / "bench.json"
    bench.main(["--n", "24", "--s-values", "4", "6", "--repeats", "1", "--sample", "2",
                "--smoother", smoother, "--json", str(out)])
    data = json.loads(out.read_text())
    for key in ("sources_over_separate", "per_source_over_two_solves", "s_values", "n",
                "rows", "targets", "machine", "OPENBLAS_NUM_THREADS"):
        assert key in data, key
    assert data["s_values"] == [4, 6] and data["n"] == 24 * 24
    assert data["OPENBLAS_NUM_THREADS"] is not None
    for row in data["rows"]:
        assert row["gradient_agreement"] <= 1e-6, row  # the three ways agree
        assert row["solves"] == "one_by_one"
        for key in ("sources_s", "batched_cg_s", "block_cg_s", "separate_s", "two_solves_s"):
            assert row[key] > 0, (key, row)
    assert set(data["targets"]) == {"sources_over_separate", "per_source_over_two_solves"}

"""Smoke test of scripts/bench_recycling.py on a very small mesh, serial cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import script_module


@pytest.fixture(scope="module")
def bench():
    with script_module("bench_recycling") as module:
        yield module


def test_main_writes_json(bench, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    bench.main(["--n", "16", "--steps", "3", "--k", "0", "4", "--no-petsc", "--json", str(out)])
    data = json.loads(out.read_text())
    assert {"machine", "n", "steps", "k", "serial", "petsc"} <= set(data)
    assert data["machine"]["OPENBLAS_NUM_THREADS"] is not None
    assert set(data["serial"]) == {"-".join(case) for case in bench.SERIAL_CASES}
    for case in data["serial"].values():
        assert set(case) == {"k=0", "k=4"}
        assert case["k=0"]["max_gradient_rel_diff"] == 0.0
        assert case["k=4"]["max_gradient_rel_diff"] < 1e-6
        assert case["k=4"]["primal_iterations"] > 0
    assert "k=4" in capsys.readouterr().out

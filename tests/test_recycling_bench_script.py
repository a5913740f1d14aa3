"""Smoke test of scripts/bench_recycling.py on a very small mesh, serial cases."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_recycling.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_recycling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


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

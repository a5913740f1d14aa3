"""Smoke test of scripts/bench_newton.py on very small meshes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import script_module


@pytest.fixture(scope="module")
def bench():
    with script_module("bench_newton") as module:
        yield module


def test_main_writes_json(bench, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    bench.main(["--meshes", "16", "24", "--k", "10", "--repeats", "1", "--json", str(out)])
    data = json.loads(out.read_text())
    for key in ("meshes", "newton_iterations", "lbfgs_iterations", "newton_solves",
                "lbfgs_solves", "hessian_over_gradient", "eigs_above_one", "machine",
                "OPENBLAS_NUM_THREADS", "targets"):
        assert key in data, key
    assert data["meshes"] == [16, 24]
    assert data["OPENBLAS_NUM_THREADS"] is not None
    assert {"platform", "cores"} <= set(data["machine"])
    assert all(data["newton_converged"])
    assert all(r < 1e-3 for r in data["lbfgs_reduction"])  # scipy may stop near 1e-6 itself
    for newton, lbfgs in zip(data["newton_solves"], data["lbfgs_solves"], strict=True):
        assert 0 < newton and 0 < lbfgs
    assert all(ratio > 0 for ratio in data["hessian_over_gradient"])
    assert "| 24² |" in capsys.readouterr().out

"""Smoke test of scripts/bench_mpi_topology.py on a tiny grid, on 1 and 2 ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.mpi

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_mpi_topology.py"


def test_writes_the_json_keys(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    root = str(SCRIPT.parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, str(SCRIPT), "--nelx", "8", "--nely", "4",
                           "--nelz", "4", "--repeats", "1", "--timeout", "240", "--json",
                           str(out)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    for key in ("overhead_vs_petsc4py", "efficiency_2", "seconds_per_iteration", "elements",
                "peak_memory_mb_per_rank", "machine", "per_ranks"):
        assert key in data, key
    assert data["elements"] == 128 and sorted(data["per_ranks"]) == ["1", "2"]
    for run in data["per_ranks"].values():
        assert run["iterations"][0] > 0 and run["iterations"][1] == 0, run  # λ = u
        assert abs(run["iterations"][0] - run["petsc4py_iterations"][0]) <= 1, run
    assert len(data["peak_memory_mb_per_rank"]) == 2
    assert "efficiency_2" in done.stdout

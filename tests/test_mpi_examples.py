"""The distributed examples under mpirun (``--quick``): Taylor test first, JSON summary last.

Each example is run as a user would run it, ``mpirun -n 2 python examples/<name>.py --quick``,
from a temporary directory under ``timeout`` (a deadlock fails fast). Rank 0's last output
line is the JSON summary; the figure goes to the current directory, nothing else is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_petsc_mpi import mpirun

pytestmark = pytest.mark.mpi

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("taylor_rate", "final_objective", "iterations", "seconds", "ranks", "n", "p")


def run_example(script: str, folder: Path, nranks: int = 2, timeout: float = 400.0) -> dict:
    folder.mkdir()
    command = ["timeout", "-k", "5", str(timeout), mpirun(), "-n", str(nranks),
               sys.executable, str(ROOT / "examples" / script), "--quick"]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
               PYTHONPATH=path)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
    output = done.stdout + done.stderr
    assert done.returncode != 124, f"timed out after {timeout} s (deadlock?)\n{output[-4000:]}"
    assert done.returncode == 0, f"failed ({done.returncode}):\n{output[-6000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"expected one JSON line (rank 0's):\n{done.stdout[-4000:]}"
    assert done.stdout.rstrip().endswith(lines[0]), "the JSON summary is not the last line"
    summary = json.loads(lines[0])
    for key in KEYS:
        assert key in summary, (key, summary)
    assert summary["ranks"] == nranks
    assert summary["taylor_passed"] and 1.9 <= summary["taylor_rate"] <= 2.1, summary
    return summary


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_topology_3d_decreases_compliance_and_keeps_the_adjoint_equal_to_the_state(tmp_path):
    summary = run_example("mpi_topology_3d.py", tmp_path / "topology")
    assert summary["final_objective"] < 0.5 * summary["initial_objective"], summary
    assert summary["adjoint_minus_state"] <= 1e-4, summary
    assert summary["p"] == 24 * 12 * 12 and summary["n"] == 3 * 25 * 13 * 13, summary
    assert written(tmp_path / "topology") == ["app_mpi_topology_3d.png"]


def test_inverse_conductivity_with_tao_decreases_the_objective(tmp_path):
    summary = run_example("mpi_inverse_conductivity.py", tmp_path / "inverse")
    assert summary["final_objective"] < 0.1 * summary["initial_objective"], summary
    assert summary["n"] == summary["p"] == 1600, summary
    assert written(tmp_path / "inverse") == ["app_mpi_inverse_conductivity.png"]


def test_diffusion_3d_checks_its_gradient_and_ends_with_json(tmp_path):
    summary = run_example("mpi_diffusion_3d.py", tmp_path / "diffusion")
    assert summary["n"] == summary["p"] == 8000, summary
    assert written(tmp_path / "diffusion") == []

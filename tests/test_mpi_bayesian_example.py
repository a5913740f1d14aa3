"""``examples/mpi_bayesian_inversion.py`` under mpirun: the same answer on 1 and 2 ranks.

The example is run with ``--quick`` as a user would run it (``mpirun -n K python ...``, from a
temporary directory, under ``timeout`` so that a deadlock fails fast); rank 0's last output
line is its JSON summary. The data, noise and random probes are global arrays sliced per rank,
so the Newton iterations, the MAP point's norm and the eigenvalues of the prior-preconditioned
Gauss–Newton Hessian must agree across the rank counts up to the solves' tolerance.
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
SCRIPT = ROOT / "examples" / "mpi_bayesian_inversion.py"
FIGURE = "app_mpi_bayesian_inversion.png"


def run_example(nranks: int, folder: Path, timeout: float = 120.0) -> dict:
    """Run the example on ``nranks`` ranks from ``folder``; return rank 0's JSON summary."""
    folder.mkdir()
    command = ["timeout", "-k", "5", str(timeout), mpirun(), "-n", str(nranks),
               sys.executable, str(SCRIPT), "--quick"]
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
    figure = folder / FIGURE
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", output[-2000:]
    written = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert written == [FIGURE], written
    return json.loads(lines[0])


def relative_gap(a: list[float] | float, b: list[float] | float) -> float:
    """max |a − b| / max |b| (a scalar or a list)."""
    import numpy as np

    a, b = np.atleast_1d(a), np.atleast_1d(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_same_map_and_eigenvalues_on_one_and_two_ranks(tmp_path: Path) -> None:
    one, two = (run_example(n, tmp_path / f"ranks{n}") for n in (1, 2))
    assert (one["ranks"], two["ranks"]) == (1, 2)
    for summary in (one, two):
        assert summary["hessian_check_passed"], summary
        assert 1.9 <= summary["hessian_check_min_rate"] <= 2.1, summary
        assert summary["converged"], summary
        assert summary["final_objective"] < summary["initial_objective"], summary
        assert 0 < summary["eigenvalues_above_one"] <= summary["k"], summary
        assert 0 < summary["mean_posterior_std"] < summary["prior_std"], summary
        assert summary["eigen_max_residual"] < 1e-6, summary
    assert one["iterations"] == two["iterations"], (one["iterations"], two["iterations"])
    assert one["k"] == two["k"]
    assert relative_gap(two["map_norm"], one["map_norm"]) <= 1e-6, (one, two)
    assert relative_gap(two["eigenvalues"], one["eigenvalues"]) <= 1e-6, (one, two)

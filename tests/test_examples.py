"""The examples run end to end in their ``--quick`` mode and report what they claim.

Each example is run in a subprocess, as a user would run it, and its last output line is read
as the JSON summary: the Taylor test of the gradient (before optimising) must show
second-order remainders, the objective must have decreased, and the figure must be written.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Case:
    """One example run: script, extra arguments, and whether it writes a figure."""

    name: str
    script: str
    args: tuple[str, ...] = ()
    figure: bool = True
    extra_checks: tuple[str, ...] = ()


CASES = [
    Case("heat_1d_diffusivity", "heat_1d_diffusivity.py", figure=False),
    Case("topology_optimization", "topology_optimization.py",
         extra_checks=("self_adjoint",)),
    Case("inverse_conductivity_2d", "inverse_conductivity.py"),
    Case("inverse_conductivity_3d", "inverse_conductivity.py", ("--3d",)),
    Case("source_inversion", "source_inversion.py", extra_checks=("transpose_matters",)),
]


def run_example(case: Case, tmp_path: Path) -> tuple[dict, str, Path | None]:
    """Run ``case`` with ``--quick``; return its JSON summary, its stdout and the figure path."""
    figure = tmp_path / f"{case.name}.png" if case.figure else None
    command = [sys.executable, str(EXAMPLES / case.script), "--quick", *case.args]
    if figure is not None:
        command += ["--out", str(figure)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env=env)
    assert result.returncode == 0, f"{case.script} failed:\n{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{case.script} printed no JSON line:\n{result.stdout}"
    return json.loads(lines[-1]), result.stdout, figure


def initial_objective(summary: dict, stdout: str) -> float:
    """The objective before optimising: from the summary, or the heat example's misfit line."""
    if "initial_objective" in summary:
        return float(summary["initial_objective"])
    match = re.search(r"misfit ([0-9.eE+-]+) -> ([0-9.eE+-]+)", stdout)
    assert match, "no initial objective in the summary or the output"
    return float(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_example_quick_run(case: Case, tmp_path: Path) -> None:
    summary, stdout, figure = run_example(case, tmp_path)

    for key in ("taylor_rate", "final_objective", "iterations", "seconds"):
        assert key in summary, f"{case.name}: summary lacks {key!r}: {summary}"
    assert 1.9 <= summary["taylor_rate"] <= 2.1, summary
    assert summary.get("taylor_passed", True), summary
    final = float(summary["final_objective"])
    assert math.isfinite(final)
    assert final < initial_objective(summary, stdout), summary
    assert summary["iterations"] > 0
    if figure is not None:
        assert figure.is_file() and figure.stat().st_size > 1000, f"no figure at {figure}"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    if "self_adjoint" in case.extra_checks:
        # compliance: the adjoint solve retraces the primal one, λ = u
        assert summary["adjoint_minus_state"] < 1e-6, summary
    if "transpose_matters" in case.extra_checks:
        # M in place of Mᵀ: the adjoint GMRES needs far more iterations (or hits its cap)
        exact = summary["adjoint_iterations_exact_transpose"]
        assert summary["adjoint_iterations_primal_M"] > 5 * exact, summary

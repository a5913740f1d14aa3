"""The examples run end to end in their ``--quick`` mode and report what they claim.

Each example is run in a subprocess, as a user would run it, from a temporary directory, and
its last output line is read as the JSON summary: the Taylor test of the gradient (before
optimising) must show second-order remainders, the objective must have decreased, and the
figure must be written where it belongs (the current directory, or ``--out DIR``), never into
the repository's ``docs/img``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import framework

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
IMAGES = ROOT / "docs" / "img"


@dataclass(frozen=True)
class Case:
    """One example run: script, extra arguments, its figure and where it is asked to go.

    ``out`` is ``"cwd"`` (no ``--out``: the current directory), ``"dir"`` (``--out DIR``) or
    ``"file"`` (``--out path.png``).
    """

    name: str
    script: str
    figure: str
    args: tuple[str, ...] = ()
    out: str = "cwd"
    extra_checks: tuple[str, ...] = ()
    #: An optional framework the example needs (``tests/conftest.py::framework``).
    needs: str | None = None


CASES = [
    Case("heat_1d_diffusivity", "heat_1d_diffusivity.py", "heat_1d_diffusivity.png"),
    Case("topology_optimization", "topology_optimization.py", "app_topology.png", out="dir",
         extra_checks=("self_adjoint",)),
    Case("inverse_conductivity_2d", "inverse_conductivity.py", "app_inverse_conductivity.png"),
    Case("inverse_conductivity_3d", "inverse_conductivity.py",
         "app_inverse_conductivity_3d.png", ("--3d",), out="file"),
    Case("source_inversion", "source_inversion.py", "app_source_inversion.png", out="dir",
         extra_checks=("transpose_matters",)),
    Case("bayesian_inverse_conductivity", "bayesian_inverse_conductivity.py",
         "app_bayesian_inverse_conductivity.png", extra_checks=("laplace",)),
    Case("helmholtz_inversion", "helmholtz_inversion.py", "app_helmholtz_inversion.png",
         out="dir"),
    Case("eit_inversion", "eit_inversion.py", "app_eit_inversion.png", out="dir",
         extra_checks=("sources",)),
    Case("jax_inverse_diffusion", "jax_inverse_diffusion.py", "app_jax_neural_field.png",
         out="dir", needs="jax"),
]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Each file below ``folder``: its SHA-256 and its modification time (ns)."""
    return {str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(),
                                            path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def run_example(case: Case, tmp_path: Path) -> tuple[dict, str, Path]:
    """Run ``case`` with ``--quick`` from ``tmp_path``; return its JSON summary, its stdout and
    where its figure must be."""
    command = [sys.executable, str(EXAMPLES / case.script), "--quick", *case.args]
    figure = {"cwd": tmp_path / case.figure,
              "dir": tmp_path / "figures" / case.figure,
              "file": tmp_path / "figures" / f"{case.name}.png"}[case.out]
    if case.out == "dir":
        command += ["--out", "figures"]
    elif case.out == "file":
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
    if case.needs:
        framework(case.needs)
    images_before = snapshot(IMAGES)
    summary, stdout, figure = run_example(case, tmp_path)
    assert snapshot(IMAGES) == images_before, "the example wrote into the repository's docs/img"

    for key in ("taylor_rate", "final_objective", "iterations", "seconds"):
        assert key in summary, f"{case.name}: summary lacks {key!r}: {summary}"
    assert 1.9 <= summary["taylor_rate"] <= 2.1, summary
    assert summary.get("taylor_passed", True), summary
    final = float(summary["final_objective"])
    assert math.isfinite(final)
    assert final < initial_objective(summary, stdout), summary
    assert summary["iterations"] > 0
    assert figure.is_file() and figure.stat().st_size > 1000, f"no figure at {figure}"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [str(figure.relative_to(tmp_path))], written
    assert Path(summary["figure"]) == figure.relative_to(tmp_path), summary["figure"]

    if "self_adjoint" in case.extra_checks:
        # compliance: the adjoint solve retraces the primal one, λ = u
        assert summary["adjoint_minus_state"] < 1e-6, summary
    if "transpose_matters" in case.extra_checks:
        # M in place of Mᵀ: the adjoint GMRES needs far more iterations (or hits its cap)
        exact = summary["adjoint_iterations_exact_transpose"]
        assert summary["adjoint_iterations_primal_M"] > 5 * exact, summary
    if "sources" in case.extra_checks:
        # one sources_gradient equals the sum of S single-source gradients; one set-up
        assert summary["single_source_sum_difference"] <= 1e-8, summary
        assert summary["preconditioner_setups"] == 1, summary
    if "laplace" in case.extra_checks:
        # the Hessian action checked at rate 2, Newton-CG to |g|/|g0| <= 1e-6, pairs found
        assert 1.9 <= summary["hessian_check_min_rate"] <= 2.1, summary
        assert summary["converged"] and summary["gradient_reduction"] <= 1e-6, summary
        assert 0 < summary["eigenvalues_above_one"] <= summary["k"], summary
        assert summary["mean_posterior_std"] > 0, summary

"""Smoke test of scripts/bench_optimisation_loop.py on very small meshes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_optimisation_loop as bench  # noqa: E402


def test_main_writes_json_and_plot(tmp_path: Path, capsys) -> None:
    out, figure = tmp_path / "loop.json", tmp_path / "loop.png"
    record = bench.main(["--n", "24", "--source-n", "16", "--iterations", "4", "--repeats", "1",
                         "--recycle", "4", "--json", str(out), "--out", str(figure)])
    data = json.loads(out.read_text())
    assert data["amortised_over_cold_primal"] == record["amortised_over_cold_primal"]
    for key in ("amortised_over_cold_primal", "baseline_amortised_over_cold_primal",
                "final_objective_rel_diff", "machine", "problems", "target"):
        assert key in data, key
    for name in ("conductivity", "source"):
        problem = data["problems"][name]
        assert set(problem["mean_iterations"]) == set(bench.VARIANTS)
        assert problem["amortised_over_cold_primal"] > 0
        assert problem["final_objective_rel_diff"]["fixed"] == 0.0
        assert problem["variants"]["fixed"]["evaluations"] >= 4
    assert figure.stat().st_size > 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["amortised_over_cold_primal"] == data["amortised_over_cold_primal"]

"""Smoke test of scripts/bench_amg_transpose.py on very small sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import script_module


@pytest.fixture(scope="module")
def bench():
    with script_module("bench_amg_transpose") as module:
        yield module


def test_problems_and_pattern_vjp(bench) -> None:
    A = bench.convection_diffusion_matrix(5, 100.0)
    assert A.shape == (25, 25) and A.format == "csr"
    assert abs(A - A.T).max() > 0  # upwind convection: nonsymmetric
    P = bench.poisson_3d(3)
    assert abs(P - P.T).max() == 0
    rng = np.random.default_rng(0)
    lam, x = rng.standard_normal(25), rng.standard_normal(25)
    cotangent = bench.pattern_vjp(A, lam, x)
    rows, cols = A.nonzero()
    dense = -np.outer(lam, x)
    B = A.copy()
    B.data = cotangent
    assert np.allclose(B.toarray()[rows, cols], dense[rows, cols])


def test_main_writes_json(bench, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    results = bench.main(["--grid-2d", "12", "--grid-3d", "5", "--repeats", "1",
                          "--wrong-cap", "30", "--cases", "cd2d-pe100-air", "poisson3d-sa",
                          "--json", str(out)])
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["cases"]] == ["cd2d-pe100-air", "poisson3d-sa"]
    for case in data["cases"]:
        for key in ("n", "primal_iters", "adjoint_iters", "adjoint_iters_with_M",
                    "gradient_over_primal", "rebuild_gradient_over_primal",
                    "overhead_vs_pyamg", "setup_seconds", "primal_seconds",
                    "adjoint_seconds", "gradient_seconds"):
            assert key in case
        assert case["converged"]
        assert case["gradient_over_primal"] > 1.0
    assert data["max_transpose_dot_error"] <= 1e-12
    assert results["wrong_cap"] == 30
    assert "| cd2d-pe100-air |" in capsys.readouterr().out

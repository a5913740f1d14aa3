"""Smoke test of scripts/bench_frameworks.py on a tiny grid."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import framework, script_module

framework("jax")
framework("torch")


def test_main_writes_json(tmp_path: Path, capsys) -> None:
    with script_module("bench_frameworks") as module:
        out = tmp_path / "bench.json"
        module.main(["--grids", "12", "--repeats", "1", "--no-jax-cg", "--json", str(out)])
    data = json.loads(out.read_text())
    for key in ("n", "ours_jax_s", "jax_cg_s", "ours_native_s", "ours_torch_s",
                "speedup_vs_jax_cg", "jax_over_native", "max_rel_diff"):
        assert key in data, key
    assert data["n"] == 144
    assert data["max_rel_diff"] < 1e-8
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 144

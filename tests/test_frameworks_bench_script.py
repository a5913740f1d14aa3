"""Smoke test of scripts/bench_frameworks.py on a tiny grid."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from conftest import framework

framework("jax")
framework("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_frameworks.py"


def test_main_writes_json(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_frameworks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        out = tmp_path / "bench.json"
        module.main(["--grids", "12", "--repeats", "1", "--no-jax-cg", "--json", str(out)])
    finally:
        sys.modules.pop(spec.name, None)
    data = json.loads(out.read_text())
    for key in ("n", "ours_jax_s", "jax_cg_s", "ours_native_s", "ours_torch_s",
                "speedup_vs_jax_cg", "jax_over_native", "max_rel_diff"):
        assert key in data, key
    assert data["n"] == 144
    assert data["max_rel_diff"] < 1e-8
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 144

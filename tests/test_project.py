"""Project-level checks: the docs build without warnings, the code is lint-clean, the
README's quickstart runs as written, and the core imports without optional dependencies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="docs extra not installed")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: pip install 'krylov-adjoint[test]'")
    result = subprocess.run([ruff, "check", "krylov_adjoint", "tests", "scripts", "examples"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_quickstart_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python block"
    script = tmp_path / "quickstart.py"
    script.write_text(blocks[0])
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_import_needs_no_optional_dependency():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('petsc4py', 'mpi4py', 'matplotlib', 'tqdm', 'jax',\n"
        "                                   'torch'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import krylov_adjoint, krylov_adjoint.gallery, krylov_adjoint.verify\n"
        "import krylov_adjoint.adapters\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_a_missing_framework_names_its_extra(framework):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {framework!r}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import krylov_adjoint as ka\n"
        "try:\n"
        f"    import krylov_adjoint.{framework}\n"
        "except ka.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert f"pip install 'krylov-adjoint[{framework}]'" in result.stdout, result.stderr


def test_a_missing_framework_fails_under_ci_and_skips_elsewhere(monkeypatch):
    import importlib.util

    from conftest import framework

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "jax" else real(name, *args))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        framework("jax")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"krylov-adjoint\[jax\]"):
        framework("jax")

"""The public surface: what ``import krylov_adjoint as ka`` gives, without optional imports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import krylov_adjoint as ka
import krylov_adjoint.backends.petsc as petsc_backend


def run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_adapters_is_an_attribute_of_the_package():
    out = run("import krylov_adjoint as ka\n"
              "print(ka.adapters.affine_operator.__module__, ka.adapters.minimize.__name__)")
    assert out == "krylov_adjoint.adapters.affine minimize"


def test_adapters_is_listed_and_exported():
    assert "adapters" in ka.__all__
    assert "adapters" in dir(ka)
    out = run("from krylov_adjoint import *\nprint(adapters.__name__)")
    assert out == "krylov_adjoint.adapters"


def test_adapters_is_imported_on_first_use_only():
    out = run("import sys\nimport krylov_adjoint as ka\n"
              "before = 'krylov_adjoint.adapters' in sys.modules\n"
              "ka.adapters\n"
              "print(before, 'krylov_adjoint.adapters' in sys.modules)")
    assert out == "False True"


def test_every_name_in_all_is_reachable():
    for name in ka.__all__:
        assert getattr(ka, name) is not None, name


def test_unknown_attributes_still_raise_attribute_error():
    try:
        ka.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_api_reference_documents_adapters_petsc_backend_and_amg():
    """docs/api.rst names every public adapter, PETSc-backend class and AMG method."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.rst").read_text()
    documented = set(re.findall(r"^\.\. auto\w+:: ([\w.]+)", text, flags=re.M))
    members = {f"{target}.{name.strip()}" for target, names in re.findall(
        r"^\.\. autoclass:: ([\w.]+)\n   :members: ((?:.+\n)(?:             .+\n)*)",
        text, flags=re.M) for name in names.replace("\n", " ").split(",")}
    expected = {f"krylov_adjoint.adapters.{name}" for name in ka.adapters.__all__}
    expected |= {f"krylov_adjoint.backends.petsc.{name}" for name in petsc_backend.__all__
                 if name not in ("gallery", "verify")}
    expected |= {f"krylov_adjoint.backends.petsc.gallery.{name}"
                 for name in petsc_backend.gallery.__all__}
    # the PETSc verify module re-exports krylov_adjoint.verify, documented there once
    expected |= {f"krylov_adjoint.backends.petsc.verify.{name}"
                 for name in petsc_backend.verify.__all__ if name not in ka.verify.__all__}
    expected |= {f"krylov_adjoint.verify.{name}" for name in ka.verify.__all__
                 if name[0].islower()}
    expected |= {"krylov_adjoint.adapters", "krylov_adjoint.backends.petsc"}
    missing = sorted(expected - documented)
    assert not missing, f"not in docs/api.rst: {missing}"
    amg = "krylov_adjoint.precond.AMGPreconditioner"
    for method in ("apply", "apply_transpose", "is_symmetric", "asymmetry"):
        assert f"{amg}.{method}" in members, method

"""Lazy import of petsc4py and mpi4py, with an error that names the extra to install."""

from __future__ import annotations

import sys
from typing import Any

from ...errors import require

__all__ = ["petsc", "mpi", "petsc_argv"]

_PURPOSE = "the PETSc backend"


def petsc() -> Any:
    """The ``petsc4py.PETSc`` module, initialised with the command line on first use.

    PETSc reads ``sys.argv`` once, at initialisation, so that ``-ksp_monitor``,
    ``-ka_primal_ksp_type gmres`` or ``-log_view`` given to the script take effect; the
    script's own long options (``--n 100``) are left out (see :func:`petsc_argv`).

    Raises
    ------
    MissingDependencyError
        When petsc4py (or mpi4py) is not installed: ``pip install 'krylov-adjoint[mpi]'``.
    """
    module = sys.modules.get("petsc4py.PETSc")
    if module is not None:
        return module
    mpi()
    petsc4py = require("petsc4py", "mpi", _PURPOSE)
    if "petsc4py.PETSc" not in sys.modules:
        petsc4py.init(petsc_argv(sys.argv))
    from petsc4py import PETSc

    return PETSc


def petsc_argv(argv: list[str]) -> list[str]:
    """``argv`` without GNU-style long options and their values: PETSc's options have one dash.

    A script's own ``--name value`` or ``--name=value`` would otherwise be reported by PETSc
    as unused options at exit.

    Examples
    --------
    >>> petsc_argv(["run.py", "--n", "100", "-ksp_monitor", "--quick", "-pc_type", "gamg"])
    ['run.py', '-ksp_monitor', '-pc_type', 'gamg']
    """
    kept = argv[:1]
    skip_value = False
    for token in argv[1:]:
        if skip_value:
            skip_value = False
            if not token.startswith("-"):
                continue
        if token.startswith("--"):
            skip_value = "=" not in token and token != "--"
            continue
        kept.append(token)
    return kept


def mpi() -> Any:
    """The ``mpi4py.MPI`` module.

    Raises
    ------
    MissingDependencyError
        When mpi4py is not installed: ``pip install 'krylov-adjoint[mpi]'``.
    """
    module = sys.modules.get("mpi4py.MPI")
    if module is not None:
        return module
    require("mpi4py", "mpi", _PURPOSE)
    return require("mpi4py.MPI", "mpi", _PURPOSE)

"""Shared by the scripts run under mpirun: one JSON record per rank on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from krylov_adjoint.backends.petsc._import import mpi, petsc

MARK = "KA-RESULT "


def comm() -> Any:
    """COMM_WORLD, with PETSc initialised (and its logging on, for event counts)."""
    PETSc = petsc()
    PETSc.Log.begin()
    return mpi().COMM_WORLD


def emit(record: dict[str, Any]) -> None:
    """Print this rank's record on one line, marked, for the test to parse."""
    world = mpi().COMM_WORLD
    record = {"rank": world.Get_rank(), "size": world.Get_size(), **record}
    sys.stdout.write(MARK + json.dumps(record, default=float) + "\n")
    sys.stdout.flush()


def relative_error(a: Any, b: Any) -> float:
    """‖a − b‖ / ‖b‖."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))

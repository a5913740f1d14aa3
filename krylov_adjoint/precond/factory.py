"""Build a preconditioner from a name (or a callable) and an assembled matrix."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import IdentityPreconditioner, Preconditioner

__all__ = ["make_preconditioner", "PRECONDITIONERS"]

#: Names accepted by :func:`make_preconditioner`, with the class each one builds.
PRECONDITIONERS: dict[str, str] = {
    "jacobi": "krylov_adjoint.precond.jacobi:JacobiPreconditioner",
    "ilu": "krylov_adjoint.precond.ilu:ILUPreconditioner",
    "amg": "krylov_adjoint.precond.amg:AMGPreconditioner",
}


def make_preconditioner(spec: str | Callable[[Any], Preconditioner], A: Any,
                        **options: Any) -> Preconditioner:
    """Set up a preconditioner of the given kind on the assembled matrix ``A``.

    Parameters
    ----------
    spec : {"jacobi", "ilu", "amg", "none"} or callable ``A -> Preconditioner``
    A : scipy.sparse matrix
    **options
        Passed to the preconditioner's constructor (e.g. ``drop_tol`` for ILU, ``method`` and
        ``cycle`` for AMG).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> M = make_preconditioner("jacobi", sp.diags([2.0, 4.0]))
    >>> type(M).__name__
    'JacobiPreconditioner'
    """
    if callable(spec):
        built = spec(A, **options)
        if not isinstance(built, Preconditioner):
            raise TypeError("the preconditioner factory must return an object with shape, apply "
                            f"and apply_transpose, got {type(built).__name__}")
        return built
    if spec == "none":
        return IdentityPreconditioner(A.shape[0])
    if spec not in PRECONDITIONERS:
        names = ", ".join(repr(k) for k in [*PRECONDITIONERS, "none"])
        raise ValueError(f"unknown preconditioner {spec!r}: expected one of {names}, a "
                         "Preconditioner instance or a callable A -> Preconditioner")
    module_name, class_name = PRECONDITIONERS[spec].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(A, **options)

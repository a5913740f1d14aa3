"""PETSc's ``KSPConvergedReason`` mapped onto the library's :class:`ConvergenceReason`."""

from __future__ import annotations

from functools import cache
from typing import Any

from ...krylov.result import ConvergenceReason
from ._import import petsc

__all__ = ["from_petsc", "petsc_reason_name", "describe_petsc_error"]

# PETSc's error codes (petscsystypes.h) most likely from a preconditioner's set-up.
_ERROR_CODES = {
    55: "out of memory",
    56: "operation not supported",
    60: "nonconforming object sizes",
    62: "wrong argument",
    63: "argument out of range",
    71: "zero pivot in LU factorization",
    72: "floating point exception",
    73: "object in wrong state (e.g. a matrix missing diagonal entries)",
    76: "error in a library called by PETSc",
    77: "PETSc library generated inconsistent data",
    81: "zero pivot in Cholesky factorization",
    91: "solver did not converge",
}

# PETSc's names (without the KSP_ prefix) -> the library's reason.
_BY_NAME = {
    "CONVERGED_RTOL": ConvergenceReason.CONVERGED_RTOL,
    "CONVERGED_RTOL_NORMAL": ConvergenceReason.CONVERGED_RTOL,
    "CONVERGED_RTOL_NORMAL_EQUATIONS": ConvergenceReason.CONVERGED_RTOL,
    "CONVERGED_ATOL": ConvergenceReason.CONVERGED_ATOL,
    "CONVERGED_ATOL_NORMAL": ConvergenceReason.CONVERGED_ATOL,
    "CONVERGED_ATOL_NORMAL_EQUATIONS": ConvergenceReason.CONVERGED_ATOL,
    "CONVERGED_HAPPY_BREAKDOWN": ConvergenceReason.CONVERGED_HAPPY_BREAKDOWN,
    "DIVERGED_MAX_IT": ConvergenceReason.DIVERGED_MAXITER,
    "DIVERGED_ITS": ConvergenceReason.DIVERGED_MAXITER,
    "DIVERGED_DTOL": ConvergenceReason.DIVERGED_DTOL,
    "DIVERGED_BREAKDOWN": ConvergenceReason.DIVERGED_BREAKDOWN,
    "DIVERGED_BREAKDOWN_BICG": ConvergenceReason.DIVERGED_BREAKDOWN,
    "DIVERGED_INDEFINITE_PC": ConvergenceReason.DIVERGED_INDEFINITE_PC,
    "DIVERGED_INDEFINITE_MAT": ConvergenceReason.DIVERGED_INDEFINITE_MATRIX,
    "DIVERGED_NANORINF": ConvergenceReason.DIVERGED_NAN,
    "DIVERGED_NAN": ConvergenceReason.DIVERGED_NAN,
}


@cache
def _names() -> dict[int, str]:
    reasons = petsc().KSP.ConvergedReason
    table: dict[int, str] = {}
    for name in dir(reasons):
        value = getattr(reasons, name)
        if name.isupper() and isinstance(value, int):
            table.setdefault(int(value), name.removeprefix("KSP_"))
    return table


def petsc_reason_name(code: int) -> str:
    """PETSc's name of a ``KSPConvergedReason`` code, e.g. ``"DIVERGED_NANORINF"``.

    Examples
    --------
    >>> petsc_reason_name(-3)
    'DIVERGED_MAX_IT'
    """
    return _names().get(int(code), f"UNKNOWN({int(code)})")


def from_petsc(code: int) -> ConvergenceReason:
    """The library's reason for a PETSc ``KSPConvergedReason`` code.

    Reasons without a counterpart map to ``CONVERGED_RTOL`` when positive (e.g. PETSc's
    ``CONVERGED_ITS`` of a fixed number of iterations) and to ``DIVERGED_OTHER`` when
    negative (e.g. ``DIVERGED_PCSETUP_FAILED``); the solve's message keeps PETSc's name.

    Examples
    --------
    >>> from_petsc(-9).name
    'DIVERGED_NAN'
    >>> from_petsc(2).name
    'CONVERGED_RTOL'
    """
    name = petsc_reason_name(code)
    reason = _BY_NAME.get(name)
    if reason is not None:
        return reason
    return ConvergenceReason.CONVERGED_RTOL if code > 0 else ConvergenceReason.DIVERGED_OTHER


def describe(ksp: Any) -> str:
    """A short explanation of why ``ksp`` stopped, with its PC's failure reason if any."""
    code = int(ksp.getConvergedReason())
    text = f"PETSc KSP_{petsc_reason_name(code)}"
    if petsc_reason_name(code) in ("DIVERGED_PCSETUP_FAILED", "DIVERGED_PC_FAILED"):
        text += f" (PC failure: {ksp.getPC().getFailedReason()})"
    return text


def describe_petsc_error(exc: BaseException) -> str:
    """``PETSc error 73 (object in wrong state ...)`` for a ``petsc4py.PETSc.Error``.

    Examples
    --------
    >>> from petsc4py import PETSc
    >>> describe_petsc_error(PETSc.Error(71))
    'PETSc error 71 (zero pivot in LU factorization)'
    """
    code = int(getattr(exc, "ierr", 0))
    meaning = _ERROR_CODES.get(code)
    return f"PETSc error {code}" + (f" ({meaning})" if meaning else "")

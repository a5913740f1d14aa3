"""The one stopping rule: ``‖b − A x‖₂ ≤ max(rtol·‖b‖₂, atol)``, as in scipy."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["stopping_target", "validate_tolerances", "Monitor"]

#: The monitor signature, for every method, solve and backend:
#: ``monitor(phase, iteration, residual_norm)`` where ``phase`` names the solve
#: (``"primal"``, ``"adjoint"``, ``"tangent"`` or ``"solve"``).
Monitor = Callable[[str, int, float], None]


def validate_tolerances(rtol: float, atol: float, maxiter: int | None, n: int) -> int:
    """Check ``rtol``, ``atol`` and ``maxiter``; return the effective ``maxiter``.

    Examples
    --------
    >>> validate_tolerances(1e-8, 0.0, None, 100)
    1000
    >>> validate_tolerances(1e-8, 0.0, None, 10**6)
    10000
    """
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol are both 0: the solve could never stop by convergence")
    if maxiter is None:
        return max(100, min(10 * n, 10_000))
    if int(maxiter) != maxiter or maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    return int(maxiter)


def stopping_target(rhs_norm: float, rtol: float, atol: float) -> float:
    """``max(rtol * rhs_norm, atol)``.

    Examples
    --------
    >>> stopping_target(10.0, 1e-3, 0.0)
    0.01
    """
    return max(rtol * rhs_norm, atol)

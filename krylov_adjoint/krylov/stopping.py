"""The one stopping rule: ``‖b − A x‖₂ ≤ max(rtol·‖b‖₂, atol)``, as in scipy."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["stopping_target", "validate_tolerances", "validate_restart", "Monitor"]

#: The monitor signature, for every method, solve and backend:
#: ``monitor(phase, iteration, residual_norm)`` where ``phase`` names the solve
#: (``"primal"``, ``"adjoint"``, ``"tangent"`` or ``"solve"``).
Monitor = Callable[[str, int, float], None]


def _is_real_number(value: Any) -> bool:
    """Whether ``value`` is a real scalar: Python or numpy, integer or floating, not bool."""
    return (isinstance(value, (numbers.Real, np.floating, np.integer))
            and not isinstance(value, (bool, np.bool_)))


def _positive_integer(value: Any, name: str) -> int:
    """``value`` as an int if it is a whole number >= 1 (``1e4`` is accepted, ``2.5`` and
    booleans are not), else a ValueError naming ``name``."""
    if (not _is_real_number(value) or not math.isfinite(value) or value != math.floor(value)
            or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def validate_tolerances(rtol: float, atol: float, maxiter: int | None, n: int) -> int:
    """Check ``rtol``, ``atol`` and ``maxiter``; return the effective ``maxiter``.

    Parameters
    ----------
    rtol, atol : real number
        Python or numpy scalars (integer or floating, not bool), finite and >= 0, not both
        0. ``rtol`` must be < 1: with ``rtol >= 1`` the zero initial guess already meets
        ``‖b − A·0‖ ≤ rtol·‖b‖`` and the solve would return x = 0 without iterating.
    maxiter : int or None
        A whole number >= 1, or None for the default ``min(10 N, 10000)``, at least 100.
    n : int
        The number of unknowns.

    Returns
    -------
    int
        The effective ``maxiter``.

    Raises
    ------
    ValueError
        Naming the offending argument and the value received.

    Examples
    --------
    >>> validate_tolerances(1e-8, 0.0, None, 100)
    1000
    >>> validate_tolerances(1e-8, 0.0, None, 10**6)
    10000
    >>> import numpy as np
    >>> validate_tolerances(np.float32(1e-6), 0, 1e3, 10)
    1000
    >>> validate_tolerances(1.0, 0.0, None, 10)
    Traceback (most recent call last):
    ...
    ValueError: rtol must be < 1, got 1.0: ...
    """
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not _is_real_number(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    if rtol >= 1:
        raise ValueError(f"rtol must be < 1, got {rtol!r}: with rtol >= 1 the zero initial "
                         "guess already meets ‖b − A x‖ ≤ rtol·‖b‖, so the solve would return "
                         "x = 0 without iterating (to stop on an absolute residual, set atol "
                         "and a small rtol)")
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol are both 0: the solve could never stop by convergence")
    if maxiter is None:
        return max(100, min(10 * n, 10_000))
    return _positive_integer(maxiter, "maxiter")


def validate_restart(restart: Any) -> int:
    """Check the GMRES restart length; return it as an int.

    Parameters
    ----------
    restart : int
        A whole number >= 1 (a Python or numpy integer, or a float such as ``30.0``);
        ``2.5`` and booleans are refused.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        When ``restart`` is not a positive integer.

    Examples
    --------
    >>> validate_restart(30)
    30
    >>> validate_restart(2.5)
    Traceback (most recent call last):
    ...
    ValueError: restart must be a positive integer, got 2.5
    """
    return _positive_integer(restart, "restart")


def stopping_target(rhs_norm: float, rtol: float, atol: float) -> float:
    """``max(rtol * rhs_norm, atol)``.

    Examples
    --------
    >>> stopping_target(10.0, 1e-3, 0.0)
    0.01
    """
    return max(rtol * rhs_norm, atol)

"""The options of a framework primitive: those of :class:`~krylov_adjoint.AdjointSolver`."""

from __future__ import annotations

from typing import Any

__all__ = ["SOLVER_OPTIONS", "check_options", "options_key"]

#: The keyword options a framework's ``linear_solve`` passes on to the engine.
SOLVER_OPTIONS = ("method", "rtol", "atol", "adjoint_rtol", "adjoint_atol", "maxiter",
                  "restart", "preconditioner", "preconditioner_options", "warm_start",
                  "rebuild_factor", "reuse_preconditioner", "monitor", "check_transpose")


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options, or a ``TypeError`` naming an unknown one.

    ``raise_on_failure`` is not among them: a framework primitive always raises on a solve
    that does not converge, never hands an unconverged x to the framework.

    Examples
    --------
    >>> check_options({"rtol": 1e-10})
    {'rtol': 1e-10}
    >>> check_options({"raise_on_failure": False})
    Traceback (most recent call last):
    ...
    TypeError: unknown option 'raise_on_failure' (a framework solve always raises on a solve \
that does not converge); the options are those of AdjointSolver: method, rtol, atol, \
adjoint_rtol, adjoint_atol, maxiter, restart, preconditioner, preconditioner_options, \
warm_start, rebuild_factor, reuse_preconditioner, monitor, check_transpose
    """
    for name in options:
        if name not in SOLVER_OPTIONS:
            why = (" (a framework solve always raises on a solve that does not converge)"
                   if name == "raise_on_failure" else "")
            raise TypeError(f"unknown option {name!r}{why}; the options are those of "
                            f"AdjointSolver: {', '.join(SOLVER_OPTIONS)}")
    return dict(options)


def options_key(options: dict[str, Any]) -> tuple[Any, ...] | None:
    """A hashable key of the options (None when one of them cannot be hashed).

    Examples
    --------
    >>> options_key({"rtol": 1e-8, "preconditioner_options": {"method": "air"}})
    (('preconditioner_options', (('method', 'air'),)), ('rtol', 1e-08))
    >>> options_key({"preconditioner_options": {"x": [1]}}) is None
    True
    """
    items = []
    for name, value in sorted(options.items()):
        if isinstance(value, dict):
            value = tuple(sorted(value.items()))
        items.append((name, value))
    key = tuple(items)
    try:
        hash(key)
    except TypeError:
        return None
    return key

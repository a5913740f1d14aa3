"""Exceptions raised by krylov-adjoint.

Every error names its culprit: the callback, the argument, the solve or the rank.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "KrylovAdjointError",
    "InputError",
    "CallbackError",
    "MissingCallbackError",
    "NonFiniteError",
    "ConvergenceError",
    "MissingDependencyError",
]


class KrylovAdjointError(Exception):
    """Base class of every error raised by this library."""


class InputError(KrylovAdjointError, ValueError):
    """An argument given to the library is unusable (wrong length, dtype, NaN, ...).

    Attributes
    ----------
    argument : str
        The name of the offending argument, e.g. ``"theta"``.
    """

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {message}")


class CallbackError(KrylovAdjointError, ValueError):
    """A user callback returned something unusable (wrong shape, dtype or type).

    Attributes
    ----------
    callback : str
        The name of the offending callback, e.g. ``"operator.vjp"``.
    """

    def __init__(self, callback: str, message: str) -> None:
        self.callback = callback
        super().__init__(f"{callback}: {message}")


class MissingCallbackError(KrylovAdjointError, ValueError):
    """An optional callback (e.g. a JVP for forward mode) is needed but was not supplied."""


class NonFiniteError(CallbackError):
    """A callback, an input or a preconditioner produced NaN or Inf."""


class ConvergenceError(KrylovAdjointError, RuntimeError):
    """A Krylov solve did not converge and the caller asked for an exception.

    Attributes
    ----------
    result : object
        The :class:`~krylov_adjoint.SolveResult` of the failed solve, with its reason,
        iterations and residual history.
    phase : str
        ``"primal"``, ``"adjoint"``, ``"tangent"`` or ``"solve"``.
    """

    def __init__(self, result: Any, phase: str = "solve") -> None:
        self.result = result
        self.phase = phase
        final = result.residual_norm
        super().__init__(
            f"{phase} solve did not converge: {result.reason.name} after "
            f"{result.iterations} iterations (residual {final:.3e}, "
            f"target {result.target:.3e}). Pass raise_on_failure=False to get the result "
            "with its reason instead."
        )


class MissingDependencyError(KrylovAdjointError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str) -> Any:
    """Import an optional module, or raise :class:`MissingDependencyError` naming the extra.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``"petsc4py"``.
    extra : str
        The ``pip install krylov-adjoint[extra]`` that provides it.
    purpose : str
        What the module is needed for, used in the message.

    Returns
    -------
    module
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the optional dependency {module!r}: "
            f"pip install 'krylov-adjoint[{extra}]'"
        ) from exc

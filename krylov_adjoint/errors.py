"""Exceptions raised by krylov-adjoint.

Every error names its culprit: the callback, the argument, the solve or the rank.

Every exception of the library (the PETSc backend's collective errors included) survives
``pickle``: its type, message and attributes come back, so that an error raised in a worker of
``multiprocessing`` or ``concurrent.futures`` reaches the parent process as itself (a
:class:`ConvergenceError` with its ``result``).
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
    "OptimizationError",
    "MissingDependencyError",
]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
             ) -> BaseException:
    """Recreate a pickled exception: same type, same ``args`` (message), same attributes.

    ``__init__`` is not called: the constructors take the culprit and a detail (or a result)
    while ``args`` holds the formatted message, so calling ``cls(*args)`` would fail.
    """
    exc = cls.__new__(cls, *args)
    exc.args = args
    for name, value in state.items():
        setattr(exc, name, value)
    return exc


class KrylovAdjointError(Exception):
    """Base class of every error raised by this library.

    Instances pickle with their type, message and attributes (``argument``, ``callback``,
    ``result``, ``phase``, notes, ...), whatever the signature of the subclass's ``__init__``.

    Examples
    --------
    >>> import pickle
    >>> err = pickle.loads(pickle.dumps(InputError("theta", "expected shape (3,), got (2,)")))
    >>> type(err).__name__, err.argument, str(err)
    ('InputError', 'theta', 'theta: expected shape (3,), got (2,)')
    """

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        if isinstance(self, ImportError):  # kept by ImportError outside __dict__
            state.update({k: getattr(self, k) for k in ("name", "path")
                          if getattr(self, k) is not None})
        return (_rebuild, (type(self), self.args, state))


class InputError(KrylovAdjointError, ValueError):
    """An argument given to the library is unusable (wrong length, dtype, NaN, ...).

    Attributes
    ----------
    argument : str
        The name of the offending argument, e.g. ``"theta"``.
    detail : str
        What is wrong with it (the message without the argument's name).
    """

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        self.detail = message
        super().__init__(f"{argument}: {message}")


class CallbackError(KrylovAdjointError, ValueError):
    """A user callback returned something unusable (wrong shape, dtype or type).

    Attributes
    ----------
    callback : str
        The name of the offending callback, e.g. ``"operator.vjp"``.
    detail : str
        What is wrong (the message without the callback's name).
    """

    def __init__(self, callback: str, message: str) -> None:
        self.callback = callback
        self.detail = message
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


class OptimizationError(KrylovAdjointError, RuntimeError):
    """An optimiser stopped without converging and the caller asked for an exception.

    Raised by :func:`krylov_adjoint.newton.newton_cg` when its line search fails or its
    iterations run out, unless ``raise_on_failure=False``.

    Attributes
    ----------
    result : object
        The optimiser's result (a :class:`~krylov_adjoint.newton.NewtonResult`): the last
        accepted θ, its ``reason`` and ``message``, and the history of every iteration.
    """

    def __init__(self, result: Any) -> None:
        self.result = result
        super().__init__(
            f"optimisation did not converge ({result.reason}): {result.message}. Pass "
            "raise_on_failure=False to get the result with its reason instead."
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

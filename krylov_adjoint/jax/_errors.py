"""The library's exceptions through ``jax.pure_callback``, which wraps them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax

from ..errors import KrylovAdjointError

__all__ = ["library_errors", "recording"]

class _Last:
    """The last library error raised by a host callback (XLA may run callbacks on another
    thread than the caller's, so this is not thread-local)."""

    error: BaseException | None = None


_last = _Last()


def recording(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a host callback) remembering the library error it raises, for
    :func:`library_errors`; the error is raised on, and JAX wraps it."""

    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except KrylovAdjointError as exc:
            _last.error = exc
            raise

    return call


@contextmanager
def library_errors() -> Iterator[None]:
    """Raise the library's exception itself when a host solve fails inside JAX.

    ``jax.pure_callback`` turns an exception of the host solve into a
    ``jax.errors.JaxRuntimeError`` whose message holds the original one (its type, e.g.
    ``ConvergenceError``, and its text). Inside this block, such an error is raised again
    as the library's own exception (:class:`~krylov_adjoint.ConvergenceError` with its
    ``result``, :class:`~krylov_adjoint.CallbackError` naming the callback, ...), chained
    to JAX's. Without it the computation still stops with JAX's error: never a NaN.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import krylov_adjoint as ka
    >>> import krylov_adjoint.jax as kj
    >>> jax.config.update("jax_enable_x64", True)
    >>> slow = lambda th, x: th * x + jnp.roll(x, 1)      # needs many GMRES iterations
    >>> try:
    ...     with kj.library_errors():
    ...         kj.linear_solve(slow, jnp.ones(50), jnp.arange(50.0), maxiter=2,
    ...                         preconditioner=None)
    ... except ka.ConvergenceError as exc:
    ...     print(exc.phase, exc.result.reason.name)
    primal DIVERGED_MAXITER
    """
    _last.error = None
    try:
        yield
    except jax.errors.JaxRuntimeError as exc:
        error = _last.error
        if error is None or type(error).__name__ not in str(exc):
            raise
        raise error from exc
    finally:
        _last.error = None

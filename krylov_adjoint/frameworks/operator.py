"""A :class:`~krylov_adjoint.ParametricOperator` from a framework's product and its derivatives.

JAX and PyTorch derive the transpose, the VJP and the JVP of the user's ``matvec(θ, x)``
each in their own way; what is made of them is the same: host callbacks on numpy arrays, the
assembly of ``values(θ)`` on a pattern for the preconditioner, the symmetric declaration that
drops the derived transpose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..problem.operator import ParametricOperator
from .pattern import EntryPattern

__all__ = ["host_operator"]


def host_operator(host: Callable[[Callable[..., Any]], Callable[..., np.ndarray]], *,
                  matvec: Callable[..., Any], transposed: Callable[..., Any],
                  vjp: Callable[..., Any], jvp: Callable[..., Any], n: int, structure: str,
                  values: Callable[..., Any] | None, pattern: Any,
                  prepare: Callable[[np.ndarray], Any]) -> ParametricOperator:
    """The operator whose callbacks are ``host(f)`` of the framework's functions.

    Parameters
    ----------
    host : callable
        Turns a framework function ``f(θ, *arrays)`` into a callback on numpy arrays.
    matvec, transposed, vjp, jvp : callable
        The framework's ``A(θ)x``, ``A(θ)ᵀy``, ``λᵀ(∂A/∂θ)x`` and ``(∂A/∂θ·dθ)x``.
    n, structure
        As for :class:`~krylov_adjoint.ParametricOperator` (no transpose callback when
        ``structure`` is ``"symmetric"`` or ``"spd"``).
    values, pattern
        ``values(θ)``, the entries at ``pattern``, assembled on the host for the
        preconditioner; both or neither.
    prepare : callable
        The operator's ``prepare(θ)`` (moves θ to the framework once per θ).

    Raises
    ------
    TypeError
        For a ``pattern`` without ``values``.
    """
    assemble = None
    if values is not None:
        entries = EntryPattern(pattern, n)
        host_values = host(values)

        def assemble(th: np.ndarray) -> Any:
            return entries.matrix(host_values(th))
    elif pattern is not None:
        raise TypeError("pattern is given without values: pass values=θ ↦ the entries")
    symmetric = structure in ("symmetric", "spd")
    return ParametricOperator(
        host(matvec), n=n, structure=structure,
        rmatvec=None if symmetric else host(transposed), vjp=host(vjp), jvp=host(jvp),
        assemble=assemble, prepare=prepare)

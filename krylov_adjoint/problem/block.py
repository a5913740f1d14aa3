"""Operator callbacks on (N, S) blocks, for an operator declared ``block=True``, checked.

One product ``A(θ) X`` for S columns reads the matrix (or the stencil's coefficients) once
instead of S times; one ``vjp`` on the blocks X and Λ returns ``Σₛ Λ[:, s]ᵀ(∂A/∂θ)X[:, s]``.
The outputs are checked as the vector callbacks' are (type, shape, dtype, finiteness), and
an operator without the declaration is applied column by column.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import readonly
from ..errors import CallbackError, NonFiniteError
from .bound import BoundProblem

__all__ = ["apply_block", "block_vjp", "checked_block"]


def apply_block(bound: BoundProblem, X: np.ndarray, *, transpose: bool) -> np.ndarray:
    """``A(θ) X`` (or ``A(θ)ᵀ X``) for an (N, k) block: one call when the operator is
    declared ``block=True``, else one checked product per column."""
    if not bound.operator.block:
        product = bound.rmatvec if transpose else bound.matvec
        columns = np.asfortranarray(X)  # contiguous columns
        return np.column_stack([product(columns[:, j]) for j in range(X.shape[1])])
    name = bound.operator.rmatvec_name if transpose else "operator.matvec"
    fn = bound.operator.rmatvec if transpose else bound.operator.matvec
    out = bound.call_operator(name + " (block)", fn, bound.theta_operator, readonly(X))
    return checked_block(name + " (block)", out, X.shape)


def block_vjp(bound: BoundProblem, X: np.ndarray, L: np.ndarray) -> np.ndarray | None:
    """``Σₛ Λ[:, s]ᵀ(∂A/∂θ)X[:, s]`` (P,): one ``vjp`` call on the blocks when declared
    ``block=True``, else the sum of the column VJPs; None for an operator without θ."""
    if not bound.operator.depends_on_theta:
        return None
    if not bound.operator.block:
        Xc, Lc = np.asfortranarray(X), np.asfortranarray(L)
        terms = [bound.operator_vjp(Xc[:, j], Lc[:, j]) for j in range(X.shape[1])]
        return np.sum(terms, axis=0)
    name = "operator.vjp (block)"
    out = bound.call_operator(name, bound.operator.vjp, bound.theta_operator, readonly(X),
                              readonly(L))
    return checked_block(name, out, (bound.params_local,))


def checked_block(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``, or a :class:`CallbackError` naming
    ``name`` (a callback, or a preconditioner, that takes blocks)."""
    if type(value) is not np.ndarray:
        raise CallbackError(name, f"expected an array of shape {shape}, got "
                                  f"{type(value).__name__} (a block in, a block out)")
    if value.shape != shape:
        raise CallbackError(name, f"expected shape {shape}, got {value.shape} (an (N, S) "
                                  "block in, an (N, S) block out)")
    if value.dtype != np.float64:
        raise CallbackError(name, f"expected dtype float64, got {value.dtype}")
    if not np.isfinite(value).all():
        raise NonFiniteError(name, "returned NaN or Inf")
    return value

"""A(θ) written in JAX, as a ParametricOperator on numpy arrays (the host side).

The products are the user's JAX functions, compiled once (``jax.jit``) and called on numpy
arrays; ``rmatvec`` is ``jax.linear_transpose`` of ``x ↦ matvec(θ, x)``, the operator VJP
``λᵀ(∂A/∂θ)x`` is ``jax.vjp`` of ``θ ↦ matvec(θ, x)`` and the JVP ``jax.jvp`` of it. θ is
moved to JAX once per θ (the operator's ``prepare``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..adapters.assembled import AssembledOperator
from ..frameworks.operator import host_operator
from ..frameworks.pattern import EntryPattern
from ..problem.operator import ParametricOperator

__all__ = ["operator", "assembled_operator"]


class _Theta:
    """θ as a JAX array, made once per θ (the operator's ``prepare``)."""

    def __init__(self) -> None:
        self.key: bytes | None = None
        self._array: np.ndarray | None = None  # the last θ array seen, compared by identity
        self.value: Any = None

    def prepare(self, theta: np.ndarray) -> None:
        if theta is self._array and not theta.flags.writeable:
            return  # the engine passes its bound θ: one read-only array per θ
        key = np.ascontiguousarray(theta).tobytes()
        if key != self.key:
            self.key, self.value = key, jnp.asarray(theta)
        self._array = theta

    def __call__(self, theta: np.ndarray) -> Any:
        self.prepare(theta)
        return self.value


def _host(fn: Callable[..., Any], theta: _Theta) -> Callable[..., np.ndarray]:
    """A jitted JAX function of (θ, *arrays) as a numpy callback."""
    compiled = jax.jit(fn)

    def call(th: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(theta(th), *arrays))

    return call


def operator(matvec: Callable[[Any, Any], Any], *, n: int, structure: str = "general",
             values: Callable[[Any], Any] | None = None,
             pattern: Any = None) -> ParametricOperator:
    """A(θ) from ``matvec(θ, x)`` written in JAX, as a :class:`~krylov_adjoint.ParametricOperator`.

    Parameters
    ----------
    matvec : callable ``(theta, x) -> A(theta) @ x``
        In JAX, linear in x; differentiable in θ.
    n : int
        N.
    structure : {"general", "symmetric", "spd"}
        Declared for every θ; the transpose is derived by ``jax.linear_transpose`` unless
        symmetric.
    values, pattern : optional
        ``values(theta)`` in JAX, the entries of (an approximation of) A(θ) at
        ``pattern`` — a :class:`~krylov_adjoint.adapters.SparsityPattern` or ``(rows,
        cols)`` — assembled on the host to build preconditioners (AMG by default).

    Returns
    -------
    ParametricOperator
        With ``rmatvec``, ``vjp`` and ``jvp`` derived by JAX, and ``assemble`` when
        ``values`` is given.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> jax.config.update("jax_enable_x64", True)
    >>> op = operator(lambda th, x: th * x + jnp.roll(x, 1), n=3)
    >>> theta = np.array([1.0, 2.0, 3.0])
    >>> op.matvec(theta, np.array([1.0, 0.0, 0.0])), op.rmatvec(theta, np.array([1.0, 0.0, 0.0]))
    (array([1., 1., 0.]), array([1., 0., 1.]))
    >>> op.vjp(theta, np.ones(3), np.array([1.0, 2.0, 3.0]))     # λᵢ xᵢ
    array([1., 2., 3.])
    """
    if not callable(matvec):
        raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
    theta = _Theta()
    example = jax.ShapeDtypeStruct((n,), jnp.float64)

    def transposed(th: Any, y: Any) -> Any:
        return jax.linear_transpose(lambda v: matvec(th, v), example)(y)[0]

    def vjp(th: Any, x: Any, lam: Any) -> Any:
        return jax.vjp(lambda t: matvec(t, x), th)[1](lam)[0]

    def jvp(th: Any, x: Any, dth: Any) -> Any:
        return jax.jvp(lambda t: matvec(t, x), (th,), (dth,))[1]

    return host_operator(lambda f: _host(f, theta), matvec=matvec, transposed=transposed,
                         vjp=vjp, jvp=jvp, n=n, structure=structure, values=values,
                         pattern=pattern, prepare=theta.prepare)


def assembled_operator(values: Callable[[Any], Any], pattern: Any, *, n: int,
                       structure: str = "general") -> AssembledOperator:
    """A(θ) given by ``values(θ)`` in JAX at ``pattern``, as an
    :class:`~krylov_adjoint.adapters.AssembledOperator` (products with the assembled CSR
    matrix; the VJP is ``jax.vjp`` of ``values`` applied to the pattern's cotangent
    ``λᵢ xⱼ``, as :func:`~krylov_adjoint.adapters.from_assembly` does).

    Parameters
    ----------
    values : callable ``theta -> array (nnz,)``
        In JAX: the entries at ``pattern`` (repeated positions are summed).
    pattern : SparsityPattern or (rows, cols)
    n : int
    structure : {"general", "symmetric", "spd"}

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> jax.config.update("jax_enable_x64", True)
    >>> rows, cols = np.array([0, 1, 1]), np.array([0, 0, 1])
    >>> op = assembled_operator(lambda th: jnp.array([th[0], 1.0, th[1] ** 2]), (rows, cols),
    ...                         n=2)
    >>> op.matrix(np.array([2.0, 3.0])).toarray()
    array([[2., 0.],
           [1., 9.]])
    >>> op.vjp(np.array([2.0, 3.0]), np.ones(2), np.ones(2))    # ∂(λᵀAx)/∂θ = (1, 2θ₁)
    array([1., 6.])
    """
    if not callable(values):
        raise TypeError(f"values must be callable, got {type(values).__name__}")
    entries = EntryPattern(pattern, n)
    theta = _Theta()
    compiled_values = _host(values, theta)
    pullback = _host(lambda th, bar: jax.vjp(values, th)[1](bar)[0], theta)
    tangent = _host(lambda th, dth: jax.jvp(values, (th,), (dth,))[1], theta)
    slots = entries.slots

    def values_vjp(th: np.ndarray, pattern_bar: np.ndarray) -> np.ndarray:
        return pullback(th, pattern_bar if slots is None else pattern_bar[slots])

    def values_jvp(th: np.ndarray, dth: np.ndarray) -> np.ndarray:
        return entries.pattern_values(tangent(th, dth))

    op = AssembledOperator(entries.pattern, lambda th: entries.pattern_values(
        compiled_values(th)), values_vjp, values_jvp=values_jvp, structure=structure)
    op.entries = entries  # type: ignore[attr-defined]
    return op

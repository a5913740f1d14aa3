"""The right-hand side b(θ): a fixed array, or a callback with its VJP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._checks import real_array
from ..errors import MissingCallbackError

__all__ = ["RightHandSide"]


class RightHandSide:
    """The right-hand side of ``A(θ) x = b(θ)``.

    Parameters
    ----------
    value : array of shape (N,) or callable ``theta -> b(theta)``
        A fixed real vector (complex ones are refused unless ``dtype=complex``), or a function
        of θ (for a complex system returning a complex vector, with ``vjp`` returning
        λᴴ∂b/∂θ, whose real part is used).
    vjp : callable ``(theta, lam) -> lamᵀ ∂b/∂θ``, shape (P,)
        Required when ``value`` is callable.
    jvp : callable ``(theta, dtheta) -> (∂b/∂θ) dtheta``, shape (N,), optional
        Enables forward mode.
    vjp_jvp : callable ``(theta, lam, dtheta) -> ∂/∂θ[lamᵀ∂b/∂θ]·dtheta``, shape (P,), optional
        The derivative of ``vjp`` in θ along dθ at fixed λ; needed for full Hessian-vector
        products when b depends on θ (zero when b is affine in θ).

    Examples
    --------
    ``b(θ) = θ`` (a source per cell):

    >>> import numpy as np
    >>> rhs = RightHandSide(lambda th: th.copy(), vjp=lambda th, lam: lam.copy(),
    ...                     jvp=lambda th, dth: dth.copy())
    >>> rhs.depends_on_theta
    True
    >>> rhs.missing_second_order
    ('rhs.vjp_jvp',)
    >>> RightHandSide(np.ones(3)).value(None)
    array([1., 1., 1.])
    """

    def __init__(self, value: np.ndarray | Callable[[np.ndarray], np.ndarray], *,
                 vjp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 jvp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 vjp_jvp: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
                 dtype: Any = np.float64) -> None:
        if callable(value):
            if vjp is None:
                raise ValueError(
                    "b depends on θ (a callable was given) but rhs vjp was not supplied: the "
                    "gradient needs λᵀ∂b/∂θ. Pass vjp=..., or pass a fixed array."
                )
            self._fixed: np.ndarray | None = None
            self._value = value
        else:
            fixed = (np.array(value, dtype=np.complex128, copy=True)
                     if np.dtype(dtype).kind == "c" else real_array(value, "rhs"))
            if fixed.ndim != 1:
                raise ValueError(f"rhs: expected a 1-D array, got shape {fixed.shape}")
            fixed.flags.writeable = False
            self._fixed = fixed
            self._value = None
        for label, fn in (("vjp", vjp), ("jvp", jvp), ("vjp_jvp", vjp_jvp)):
            if fn is not None and not callable(fn):
                raise TypeError(f"rhs {label} must be callable, got {type(fn).__name__}")
        self._vjp = vjp
        self._jvp = jvp
        self._vjp_jvp = vjp_jvp

    @property
    def depends_on_theta(self) -> bool:
        """True when b is a function of θ."""
        return self._fixed is None

    @property
    def has_jvp(self) -> bool:
        """True when forward mode is available for b."""
        return self._fixed is not None or self._jvp is not None

    def value(self, theta: np.ndarray) -> np.ndarray:
        """b(θ)."""
        if self._fixed is not None:
            return self._fixed
        return self._value(theta)  # type: ignore[misc]

    def vjp(self, theta: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
        """λᵀ ∂b/∂θ, or None for a fixed b."""
        return None if self._vjp is None else self._vjp(theta, lam)

    def jvp(self, theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        """(∂b/∂θ) dθ, or None for a fixed b."""
        if self._fixed is not None:
            return None
        if self._jvp is None:
            raise MissingCallbackError("rhs.jvp was not supplied: forward mode needs (∂b/∂θ)dθ")
        return self._jvp(theta, dtheta)

    def vjp_jvp(self, theta: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray | None:
        """∂/∂θ[λᵀ∂b/∂θ]·dθ at fixed λ, or None for a fixed b."""
        if self._fixed is not None:
            return None
        if self._vjp_jvp is None:
            raise MissingCallbackError(
                "rhs.vjp_jvp was not supplied: the full Hessian needs ∂/∂θ[λᵀ∂b/∂θ]·dθ "
                "(zero when b is affine in θ); gauss_newton_vector_product works without it")
        return self._vjp_jvp(theta, lam, dtheta)

    @property
    def missing_second_order(self) -> tuple[str, ...]:
        """The callbacks missing for full Hessian-vector products (empty when none are)."""
        if self._fixed is not None:
            return ()
        missing = () if self._jvp is not None else ("rhs.jvp",)
        return missing + (() if self._vjp_jvp is not None else ("rhs.vjp_jvp",))

    @property
    def missing_gauss_newton(self) -> tuple[str, ...]:
        """The callbacks missing for Gauss–Newton products: ``("rhs.jvp",)`` or ``()``."""
        return () if self.has_jvp else ("rhs.jvp",)

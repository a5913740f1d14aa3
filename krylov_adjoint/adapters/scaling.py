"""Elementwise laws ``s(θ)`` with their derivatives: linear, exponential, SIMP, user-given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import refuse_complex

__all__ = ["Scaling", "linear", "exponential", "simp", "as_scaling"]

Law = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Scaling:
    """An elementwise law ``s(θ)`` and its derivative ``s'(θ)``.

    Parameters
    ----------
    value : callable ``theta -> s(theta)``
        The law, applied elementwise.
    derivative : callable ``theta -> s'(theta)``
        Its derivative, elementwise.
    name : str
        For messages and reports.
    joint : callable ``theta -> (s(theta), s'(theta))``, optional
        Used by :meth:`both` when computing the two together is cheaper.

    Examples
    --------
    >>> import numpy as np
    >>> law = Scaling(np.square, lambda th: 2 * th, "square")
    >>> law(np.array([3.0])), law.derivative(np.array([3.0]))
    (array([9.]), array([6.]))
    """

    value: Law
    derivative: Law
    name: str = "custom"
    joint: Callable[[np.ndarray], tuple[Any, Any]] | None = None

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """s(θ), elementwise."""
        return self.value(theta)

    def both(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(s(θ), s'(θ))`` as float64 arrays of θ's shape, checked."""
        theta = np.asarray(theta, dtype=np.float64)
        pair = (_pair(self.joint, theta) if self.joint is not None
                else (self.value(theta), self.derivative(theta)))
        out = []
        for label, raw in zip(("value", "derivative"), pair, strict=True):
            refuse_complex(raw, f"scaling {self.name!r} {label}", callback=True)
            arr = np.asarray(raw, dtype=np.float64)
            if arr.shape != theta.shape:
                raise ValueError(f"scaling {self.name!r}: {label} returned shape {arr.shape} "
                                 f"for θ of shape {theta.shape} (it must act elementwise)")
            out.append(arr)
        return out[0], out[1]


def linear() -> Scaling:
    """``s(θ) = θ``.

    Examples
    --------
    >>> import numpy as np
    >>> linear().derivative(np.array([0.5, 2.0]))
    array([1., 1.])
    """
    return Scaling(lambda th: np.array(th, dtype=np.float64, copy=True),
                   lambda th: np.ones_like(th, dtype=np.float64), "linear")


def exponential() -> Scaling:
    """``s(θ) = exp(θ)`` (θ a log-coefficient, e.g. a log-conductivity).

    Examples
    --------
    >>> import numpy as np
    >>> exponential()(np.array([0.0, np.log(2.0)]))
    array([1., 2.])
    """
    return Scaling(np.exp, np.exp, "exp")


def simp(penalty: float = 3.0, eps: float = 1e-9) -> Scaling:
    """SIMP: ``s(θ) = ε + (1 − ε) θᵖ``, for densities θ ∈ [0, 1].

    ``ε > 0`` keeps void elements from making the matrix singular.

    Examples
    --------
    >>> import numpy as np
    >>> law = simp(3.0, 0.0)
    >>> law(np.array([0.5])), law.derivative(np.array([0.5]))
    (array([0.125]), array([0.75]))
    """
    p, e = float(penalty), float(eps)
    if not np.isfinite(p) or p < 1.0:
        raise ValueError(f"simp: penalty must be >= 1, got {penalty!r}")
    if not 0.0 <= e < 1.0:
        raise ValueError(f"simp: eps must lie in [0, 1), got {eps!r}")

    def value(th: np.ndarray) -> np.ndarray:
        return e + (1.0 - e) * np.power(th, p)

    def derivative(th: np.ndarray) -> np.ndarray:
        return p * (1.0 - e) * np.power(th, p - 1.0)

    return Scaling(value, derivative, f"simp(p={p:g}, eps={e:g})")


def as_scaling(spec: Any, *, simp_penalty: float = 3.0, simp_eps: float = 1e-9) -> Scaling:
    """A :class:`Scaling` from a name, a pair of callables or a callable returning a pair.

    Parameters
    ----------
    spec : {"linear", "exp", "simp"}, Scaling, ``(s, ds)`` or callable ``theta -> (s, ds)``
    simp_penalty, simp_eps : float
        Used by ``"simp"``.

    Examples
    --------
    >>> import numpy as np
    >>> as_scaling("simp", simp_penalty=2.0, simp_eps=0.0)(np.array([0.5]))
    array([0.25])
    >>> law = as_scaling(lambda th: (th**2, 2 * th))
    >>> law.derivative(np.array([3.0]))
    array([6.])
    """
    if isinstance(spec, Scaling):
        return spec
    if isinstance(spec, str):
        named = {"linear": linear, "exp": exponential, "exponential": exponential,
                 "simp": lambda: simp(simp_penalty, simp_eps)}
        if spec not in named:
            raise ValueError(f"scaling must be one of {sorted(named)}, a Scaling, a pair "
                             f"(s, ds) or a callable returning (s, ds); got {spec!r}")
        return named[spec]()
    if isinstance(spec, tuple | list) and len(spec) == 2 and all(map(callable, spec)):
        return Scaling(spec[0], spec[1])
    if callable(spec):
        def value(th: np.ndarray) -> np.ndarray:
            return _pair(spec, th)[0]

        def derivative(th: np.ndarray) -> np.ndarray:
            return _pair(spec, th)[1]

        return Scaling(value, derivative, joint=spec)
    raise TypeError(f"scaling: expected a name, a Scaling, a pair of callables (s, ds) or a "
                    f"callable theta -> (s, ds), got {type(spec).__name__}")


def _pair(fn: Callable[[np.ndarray], Any], theta: np.ndarray) -> tuple[Any, Any]:
    out = fn(theta)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise ValueError("a scaling callable must return the pair (s(theta), s'(theta)), "
                         f"got {type(out).__name__}")
    return out[0], out[1]

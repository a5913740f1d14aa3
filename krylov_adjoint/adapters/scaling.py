"""Elementwise laws ``s(θ)`` with their derivatives: linear, exponential, SIMP, user-given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import refuse_complex
from ..errors import MissingCallbackError

__all__ = ["Scaling", "linear", "exponential", "simp", "as_scaling"]

Law = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Scaling:
    """An elementwise law ``s(θ)`` and its first (and second) derivatives.

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
    second : callable ``theta -> s''(theta)``, optional
        The second derivative, elementwise; needed for Hessian-vector products only.

    Examples
    --------
    >>> import numpy as np
    >>> law = Scaling(np.square, lambda th: 2 * th, "square", second=lambda th: 0 * th + 2)
    >>> law(np.array([3.0])), law.derivative(np.array([3.0]))
    (array([9.]), array([6.]))
    >>> law.second_derivative(np.array([3.0]))
    array([2.])
    """

    value: Law
    derivative: Law
    name: str = "custom"
    joint: Callable[[np.ndarray], tuple[Any, Any]] | None = None
    second: Law | None = None

    @property
    def has_second(self) -> bool:
        """True when the second derivative is known."""
        return self.second is not None

    def second_derivative(self, theta: np.ndarray) -> np.ndarray:
        """``s''(θ)`` as a float64 array of θ's shape, checked."""
        if self.second is None:
            raise MissingCallbackError(
                f"scaling {self.name!r} has no second derivative: Hessian-vector products "
                "need s''; give Scaling(..., second=...) or a triple (s, ds, d2s)")
        theta = np.asarray(theta, dtype=np.float64)
        raw = self.second(theta)
        refuse_complex(raw, f"scaling {self.name!r} second", callback=True)
        out = np.asarray(raw, dtype=np.float64)
        if out.ndim == 0:  # a constant s'' (e.g. a quadratic law)
            out = np.full(theta.shape, float(out))
        if out.shape != theta.shape:
            raise ValueError(f"scaling {self.name!r}: second returned shape {out.shape} "
                             f"for θ of shape {theta.shape} (it must act elementwise)")
        return out

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
                   lambda th: np.ones_like(th, dtype=np.float64), "linear",
                   second=lambda th: np.zeros_like(th, dtype=np.float64))


def exponential() -> Scaling:
    """``s(θ) = exp(θ)`` (θ a log-coefficient, e.g. a log-conductivity).

    Examples
    --------
    >>> import numpy as np
    >>> exponential()(np.array([0.0, np.log(2.0)]))
    array([1., 2.])
    """
    return Scaling(np.exp, np.exp, "exp", second=np.exp)


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

    def second(th: np.ndarray) -> np.ndarray:
        if p == 1.0:
            return np.zeros_like(th, dtype=np.float64)
        return p * (p - 1.0) * (1.0 - e) * np.power(th, p - 2.0)

    return Scaling(value, derivative, f"simp(p={p:g}, eps={e:g})", second=second)


def as_scaling(spec: Any, *, simp_penalty: float = 3.0, simp_eps: float = 1e-9) -> Scaling:
    """A :class:`Scaling` from a name, a pair of callables or a callable returning a pair.

    Parameters
    ----------
    spec : {"linear", "exp", "simp"}, Scaling, ``(s, ds)``, ``(s, ds, d2s)`` or callable
        ``theta -> (s, ds)``. Hessian-vector products need the second derivative ``d2s``
        (known for the named laws; give the triple, or a :class:`Scaling` with ``second``).
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
    >>> law.has_second, as_scaling((np.square, lambda th: 2 * th, lambda th: 2 + 0 * th)).has_second
    (False, True)
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
    if isinstance(spec, tuple | list) and len(spec) in (2, 3) and all(map(callable, spec)):
        return Scaling(spec[0], spec[1], second=spec[2] if len(spec) == 3 else None)
    if callable(spec):
        def value(th: np.ndarray) -> np.ndarray:
            return _pair(spec, th)[0]

        def derivative(th: np.ndarray) -> np.ndarray:
            return _pair(spec, th)[1]

        return Scaling(value, derivative, joint=spec)
    raise TypeError(f"scaling: expected a name, a Scaling, callables (s, ds) or (s, ds, d2s) "
                    f"or a callable theta -> (s, ds), got {type(spec).__name__}")


def _pair(fn: Callable[[np.ndarray], Any], theta: np.ndarray) -> tuple[Any, Any]:
    out = fn(theta)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise ValueError("a scaling callable must return the pair (s(theta), s'(theta)), "
                         f"got {type(out).__name__}")
    return out[0], out[1]

"""θ-dependent coefficients computed once per θ, in the operator's ``prepare`` hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

__all__ = ["Prepared"]

V = TypeVar("V")


class Prepared(Generic[V]):
    """``build(θ)``, computed by :meth:`prepare` and handed to the callbacks at that θ.

    The engine calls the operator's ``prepare(θ)`` once per new θ and then every callback
    with that same θ object, so the callbacks find the prepared value by identity (O(1), no
    comparison of length P). A callback called directly at another θ gets ``build(θ)``
    computed afresh: never another θ's coefficients.

    Examples
    --------
    >>> import numpy as np
    >>> calls = []
    >>> square = Prepared(lambda th: calls.append(1) or th**2)
    >>> th = np.array([1.0, 2.0])
    >>> square.prepare(th)
    >>> _ = square(th); _ = square(th); len(calls)
    1
    >>> square(np.array([3.0]))  # not prepared: computed afresh
    array([9.])
    """

    def __init__(self, build: Callable[[np.ndarray], V]) -> None:
        self._build = build
        self._theta: np.ndarray | None = None
        self._value: V | None = None

    def prepare(self, theta: np.ndarray) -> None:
        """Compute the value at θ (the operator's ``prepare`` hook)."""
        self._value = self._build(theta)
        self._theta = theta

    def __call__(self, theta: np.ndarray) -> V:
        if theta is self._theta:
            return self._value  # type: ignore[return-value]
        return self._build(theta)

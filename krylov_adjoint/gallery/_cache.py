"""A one-entry cache of θ-dependent coefficients, so that Krylov iterations at one θ reuse them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

__all__ = ["LastTheta"]

V = TypeVar("V")


class LastTheta(Generic[V]):
    """Call ``build(theta)``, reusing the result while θ keeps the same values.

    The key is a private copy of θ compared by value, so a caller changing its θ array in place
    gets fresh coefficients. Costs one comparison of length P per call.

    Examples
    --------
    >>> import numpy as np
    >>> calls = []
    >>> square = LastTheta(lambda th: calls.append(1) or th**2)
    >>> th = np.array([1.0, 2.0])
    >>> _ = square(th); _ = square(th.copy()); len(calls)
    1
    """

    def __init__(self, build: Callable[[np.ndarray], V]) -> None:
        self._build = build
        self._entry: tuple[np.ndarray, V] | None = None

    def __call__(self, theta: np.ndarray) -> V:
        theta = np.asarray(theta, dtype=np.float64)
        entry = self._entry
        if entry is not None and entry[0].shape == theta.shape and np.array_equal(entry[0], theta):
            return entry[1]
        value = self._build(theta)
        self._entry = (theta.copy(), value)
        return value

"""Random vectors, directions and finite-difference step sizes shared by the checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

RandomLike = None | int | np.random.Generator


def as_generator(rng: RandomLike) -> np.random.Generator:
    """A numpy ``Generator`` from None (fresh entropy), a seed or a ``Generator``."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def as_float_vector(value: Any, name: str, length: int | None = None) -> np.ndarray:
    """A finite float64 copy of a 1-D array, or a ``ValueError`` naming ``name``."""
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.ndim != 1 or (length is not None and arr.size != length):
        expected = "a 1-D array" if length is None else f"shape ({length},)"
        raise ValueError(f"{name}: expected {expected}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    arr.flags.writeable = False
    return arr


def scaled_direction(theta: np.ndarray, rng: np.random.Generator,
                     total: Callable[[float], float] = float) -> np.ndarray:
    """A random direction whose entries are scaled by ``|θᵢ|``.

    Every parameter is perturbed relative to its own size, so that a step that is small for
    ``‖θ‖`` is also small for the smallest parameter. Zero entries are scaled by the RMS of
    the non-zero ones (by 1 when ``θ = 0``). ``total`` sums a local number over the ranks
    when θ is this rank's part of a distributed θ (the RMS is then global).
    """
    scale = np.abs(np.asarray(theta, dtype=np.float64))
    nonzero = scale[scale > 0]
    count = total(float(nonzero.size))
    fill = float(np.sqrt(total(float(np.sum(nonzero**2))) / count)) if count else 1.0
    scale = np.where(scale > 0, scale, fill)
    return rng.standard_normal(scale.size) * scale


def relative_step(base: np.ndarray, direction: np.ndarray, relative: float,
                  norm: Callable[[np.ndarray], float] = np.linalg.norm) -> float:
    """``h`` with ``h‖direction‖ = relative·‖base‖`` (``= relative`` when ``base = 0``);
    ``norm`` is the global norm of local parts on a distributed space."""
    size = float(norm(base))
    length = float(norm(direction))
    if length == 0.0:
        raise ValueError("the direction is zero")
    return relative * (size if size > 0 else 1.0) / length

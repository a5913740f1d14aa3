"""Validation of the arguments of the gallery functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["check_grid", "check_choice", "check_positive", "check_cell_values"]


def check_grid(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """A grid shape of integers >= 2."""
    out = []
    for n in shape:
        if isinstance(n, bool) or int(n) != n or int(n) < 2:
            raise InputError("n", f"grid sizes must be integers >= 2, got {tuple(shape)}")
        out.append(int(n))
    return tuple(out)


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    """One of a few option strings."""
    if value not in choices:
        names = ", ".join(repr(c) for c in choices)
        raise InputError(name, f"expected one of {names}, got {value!r}")
    return value


def check_positive(value: float, name: str) -> float:
    """A finite positive float."""
    out = float(value)
    if not np.isfinite(out) or out <= 0:
        raise InputError(name, f"expected a finite positive number, got {value!r}")
    return out


def check_cell_values(value: Any, name: str, n: int) -> np.ndarray:
    """A scalar or an array of N finite values, as a flat float64 array of length N."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif arr.size == n:
        arr = arr.reshape(-1).copy()
    else:
        raise InputError(name, f"expected a scalar or {n} values, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(name, "contains non-finite values")
    return arr

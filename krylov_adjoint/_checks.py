"""Validation of arrays coming from users and from their callbacks.

Each check names the culprit (a callback such as ``"operator.vjp"`` or an argument such as
``"theta"``), what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import CallbackError, InputError, KrylovAdjointError, NonFiniteError


def as_real_vector(value: Any, name: str, length: int | None, *, check_finite: bool = True,
                   callback: bool = True) -> np.ndarray:
    """Return ``value`` as a float64 vector of the given length, or raise naming ``name``.

    Integer and boolean arrays are converted; float32, complex and object arrays are refused
    because they would silently lose precision or meaning in a gradient.
    """
    error = CallbackError if callback else InputError
    if value is None:
        raise error(name, f"returned None, expected an array of shape ({length},)")
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and arr.dtype.itemsize < 8):
        raise error(name, f"expected dtype float64, got {arr.dtype}")
    if arr.ndim == 2 and 1 in arr.shape:
        raise error(name, f"expected shape ({length},), got {arr.shape}: return a 1-D array")
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length):
        raise error(name, f"expected shape ({length},), got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if check_finite and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))
        kind = NonFiniteError if callback else InputError
        raise kind(name, f"contains {bad.size} non-finite value(s) (NaN or Inf), first at index "
                   f"{bad[0]}")
    return arr


def as_real_scalar(value: Any, name: str) -> float:
    """Return ``value`` as a finite float, or raise naming the callback ``name``."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        raise CallbackError(name, f"expected a real scalar, got {type(value).__name__} "
                            f"with shape {arr.shape} and dtype {arr.dtype}")
    out = float(arr.reshape(()))
    if not np.isfinite(out):
        raise NonFiniteError(name, f"returned a non-finite value ({out})")
    return out


def checked_call(callback: Callable[..., Any], name: str, length: int,
                 *args: Any, check_finite: bool = True) -> np.ndarray:
    """Call a user callback with read-only copies guarded, and validate its vector output."""
    try:
        out = callback(*args)
    except KrylovAdjointError:
        raise
    except Exception as exc:
        raise CallbackError(name, f"raised {type(exc).__name__}: {exc}") from exc
    return as_real_vector(out, name, length, check_finite=check_finite)


def readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view, so that a callback cannot modify the library's (or the user's) data."""
    view = array.view()
    view.flags.writeable = False
    return view

"""Validation of arrays coming from users and from their callbacks.

Each check names the culprit (a callback such as ``"operator.vjp"`` or an argument such as
``"theta"``), what was expected and what was received.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import CallbackError, InputError, KrylovAdjointError, NonFiniteError

#: Why complex data is refused in a real problem rather than cast (numpy's cast keeps the real
#: part only).
COMPLEX_UNSUPPORTED = ("complex values in a real problem (numpy would keep the real part "
                       "silently): pass real float64 data, or declare a complex system with "
                       "dtype=complex on the operator")


def complex_message(dtype: Any) -> str:
    """The message refusing complex data of this dtype."""
    return f"got complex values (dtype {np.dtype(dtype)}): {COMPLEX_UNSUPPORTED}"


def _dtype_of(value: Any) -> np.dtype | None:
    """The dtype of an array, sparse matrix, ``LinearOperator``, scalar or nested sequence.

    None when there is none to read (a callable, ``None``, a ragged sequence, ...).
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        if value is None or callable(value):
            return None
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError):
            return None
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def refuse_complex(value: Any, name: str, *, callback: bool = False) -> None:
    """Raise when ``value`` holds complex numbers, naming ``name``; do nothing otherwise.

    Every constructor that takes data (matrices, vectors, scalars) calls this before
    converting to float64, where numpy would drop the imaginary part with only a
    ``ComplexWarning``.

    Parameters
    ----------
    value : array, sparse matrix, scipy ``LinearOperator``, scalar or sequence
    name : str
        The argument (or callback) named in the error, e.g. ``"c"`` or ``"terms[2]"``.
    callback : bool
        Raise :class:`CallbackError` (a callback returned it) instead of :class:`InputError`.

    Raises
    ------
    InputError or CallbackError

    Examples
    --------
    >>> import numpy as np
    >>> refuse_complex(np.ones(2), "c")
    >>> refuse_complex(np.array([1.0 + 2.0j]), "c")
    Traceback (most recent call last):
    ...
    krylov_adjoint.errors.InputError: c: got complex values (dtype complex128): ...
    """
    dtype = _dtype_of(value)
    if dtype is not None and dtype.kind == "c":
        raise (CallbackError if callback else InputError)(name, complex_message(dtype))


def refuse_complex_parameters(value: Any, name: str) -> None:
    """Raise when parameters (θ, a θ-like direction) hold complex numbers, naming ``name``.

    θ is real, also for a complex system: a complex parameter is two real ones.

    Examples
    --------
    >>> refuse_complex_parameters([1.0 + 1j], "theta")
    Traceback (most recent call last):
    ...
    krylov_adjoint.errors.InputError: theta: got complex values (dtype complex128): the ...
    """
    dtype = _dtype_of(value)
    if dtype is not None and dtype.kind == "c":
        raise InputError(name, f"got complex values (dtype {dtype}): the parameters θ are "
                               "real, also for a complex system; split a complex parameter "
                               "into its real and imaginary parts")


def real_array(value: Any, name: str, *, callback: bool = False) -> np.ndarray:
    """``value`` as a new float64 array, complex data refused naming ``name``.

    Examples
    --------
    >>> real_array([1, 2], "d")
    array([1., 2.])
    """
    refuse_complex(value, name, callback=callback)
    return np.array(value, dtype=np.float64, copy=True)


def as_size(value: Any, name: str, *, minimum: int = 0) -> int:
    """``value`` as a Python int of at least ``minimum``, or an :class:`InputError` naming it.

    Python and numpy integers are accepted; booleans and floats are refused, even integral
    ones such as ``3.0``, rather than truncated.

    Examples
    --------
    >>> import numpy as np
    >>> as_size(np.int64(4), "n", minimum=1)
    4
    >>> as_size(2.5, "n")
    Traceback (most recent call last):
    ...
    krylov_adjoint.errors.InputError: n: must be an integer, got 2.5 (float)
    """
    refused = InputError(name, f"must be an integer, got {value!r} ({type(value).__name__})")
    if isinstance(value, bool | np.bool_):
        raise refused
    try:
        size = operator.index(value)
    except TypeError:
        raise refused from None
    if size < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise InputError(name, f"must be {bound}, got {size}")
    return size


def as_real_vector(value: Any, name: str, length: int | None, *, check_finite: bool = True,
                   callback: bool = True) -> np.ndarray:
    """Return ``value`` as a float64 vector of the given length, or raise naming ``name``.

    Integer and boolean arrays are converted; float32, complex and object arrays are refused
    because they would silently lose precision or meaning in a gradient.
    """
    return as_vector(value, name, length, check_finite=check_finite, callback=callback)


def as_vector(value: Any, name: str, length: int | None, *, dtype: Any = np.float64,
              check_finite: bool = True, callback: bool = True) -> np.ndarray:
    """Return ``value`` as a vector of ``dtype`` (float64 or complex128), or raise naming it.

    For float64 see :func:`as_real_vector`. For complex128 (a complex system), real and
    complex128 arrays are accepted (real ones converted); complex64 and float32 are refused
    (they would lose precision).

    Examples
    --------
    >>> as_vector([1.0, 2.0], "b", 2, dtype=np.complex128)
    array([1.+0.j, 2.+0.j])
    """
    error = CallbackError if callback else InputError
    field = np.dtype(dtype)
    if value is None:
        raise error(name, f"returned None, expected an array of shape ({length},)")
    arr = np.asarray(value)
    if arr.dtype.kind == "c" and field.kind != "c":
        raise error(name, complex_message(arr.dtype))
    if arr.dtype.kind not in "biufc" or (arr.dtype.kind == "f" and arr.dtype.itemsize < 8) \
            or (arr.dtype.kind == "c" and arr.dtype.itemsize < 16):
        raise error(name, f"expected dtype {field}, got {arr.dtype}")
    if arr.ndim == 2 and 1 in arr.shape:
        raise error(name, f"expected shape ({length},), got {arr.shape}: return a 1-D array")
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length):
        raise error(name, f"expected shape ({length},), got {arr.shape}")
    arr = arr.astype(field, copy=False)
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


def callback_failure(name: str, exc: Exception, result: str = "the result"
                     ) -> KrylovAdjointError:
    """The library error for a user callback ``name`` that raised ``exc``.

    A callback that wrote into one of its (read-only) inputs is told so: the library hands
    every callback read-only views of its data, and numpy's "read-only" error would otherwise
    point at the library.

    Examples
    --------
    >>> print(callback_failure("operator.matvec", ValueError("assignment destination is "
    ...                                                      "read-only")))
    operator.matvec: must not modify its input: it tried to write into a read-only array \
(assignment destination is read-only); compute the result into a new array and return it
    """
    if isinstance(exc, KrylovAdjointError):
        return exc
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        error = CallbackError(name, f"must not modify its input: it tried to write into a "
                                    f"read-only array ({exc}); compute {result} into a new "
                                    "array and return it")
    else:
        error = CallbackError(name, f"raised {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def checked_call(callback: Callable[..., Any], name: str, length: int,
                 *args: Any, check_finite: bool = True, dtype: Any = np.float64) -> np.ndarray:
    """Call a user callback with read-only copies guarded, and validate its vector output
    (of ``dtype``: float64, or complex128 for a complex system)."""
    try:
        out = callback(*args)
    except Exception as exc:
        raise callback_failure(name, exc) from exc
    return as_vector(out, name, length, dtype=dtype, check_finite=check_finite)


def readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view, so that a callback cannot modify the library's (or the user's) data."""
    view = array.view()
    view.flags.writeable = False
    return view

"""The operator and preconditioner callbacks of a solve: read-only inputs, checked outputs.

Each product ``A @ v`` or ``M @ r`` is handed a read-only view, so that a callback that
modifies its input fails at once, named, instead of silently corrupting the Krylov
recurrence; its output is checked for type, shape and dtype by looking at the array's
header only (no pass over the data: finiteness is checked by the methods on quantities
they compute anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._checks import readonly
from ..errors import CallbackError, KrylovAdjointError
from ..problem.bound import callback_failure

__all__ = ["guarded"]

Apply = Callable[[np.ndarray], np.ndarray]

_FLOAT64 = np.dtype(np.float64)


def guarded(callback: Apply, label: str, n: int, product: str,
            dtype: Any = np.float64) -> Apply:
    """``callback`` called on a read-only view of its input, its output checked.

    Parameters
    ----------
    callback : callable ``v -> ndarray``
        E.g. a preconditioner's ``apply`` or an operator's ``matvec``.
    label : str
        The callback's name in error messages, e.g. ``"preconditioner.apply"``.
    n : int
        The expected output shape is ``(n,)``.
    product : str
        What the callback computes, for messages, e.g. ``"M @ r"``.
    dtype : float64 or complex128
        The solve's field: a complex solve also accepts float64 outputs (converted).

    Returns
    -------
    callable
        Raises :class:`~krylov_adjoint.CallbackError` naming ``label`` when the output is
        None, not an ndarray, not of shape ``(n,)`` or not of the solve's dtype (float64;
        complex128 or float64 for a complex solve), when
        the callback tried to write into a read-only array (most likely its input: the
        message says so), and when it raised any other exception (chained), as the checked
        callbacks of :class:`~krylov_adjoint.AdjointProblem` do.

    Examples
    --------
    >>> import numpy as np
    >>> def apply(r):
    ...     r *= 0.5  # modifies its input
    ...     return r
    >>> from krylov_adjoint.errors import CallbackError
    >>> try:
    ...     guarded(apply, "preconditioner.apply", 3, "M @ r")(np.ones(3))
    ... except CallbackError as exc:
    ...     print(exc)
    preconditioner.apply: must not modify its input: it tried to write into a read-only array
    (output array is read-only); compute M @ r into a new array and return it
    """

    shape = (n,)
    field = np.dtype(dtype)

    def call(v: np.ndarray) -> np.ndarray:
        if v.flags.writeable:  # the methods pass read-only aliases of their vectors if they can
            v = readonly(v)
        try:
            out = callback(v)
        except KrylovAdjointError:
            raise
        except Exception as exc:
            raise callback_failure(label, exc, product) from exc
        if type(out) is np.ndarray and out.dtype == field and out.shape == shape:
            return out
        return _checked_slowly(out, label, n, product, field)

    return call


def _checked_slowly(out: Any, label: str, n: int, product: str,
                    field: np.dtype = _FLOAT64) -> np.ndarray:
    """The output when it is an ndarray subclass of the right shape and dtype (a float64 one
    converted for a complex solve); otherwise the error saying what is wrong with it."""
    if field.kind == "c":
        if isinstance(out, np.ndarray) and out.dtype in (_FLOAT64, field) \
                and out.shape == (n,):
            return np.asarray(out, dtype=field)
        expected = f"expected {product} as a complex128 (or float64) array of shape ({n},)"
        if isinstance(out, np.ndarray) and out.shape == (n,):
            raise CallbackError(label, f"returned dtype {out.dtype}, {expected}")
        field = _FLOAT64  # the same messages for None, non-arrays and wrong shapes
    expected = f"expected {product} as a float64 array of shape ({n},)"
    if out is None:
        raise CallbackError(label, f"returned None, {expected} (return the result, do not only "
                                   "write it into an argument)")
    if not isinstance(out, np.ndarray):
        raise CallbackError(label, f"returned {type(out).__name__}, {expected}")
    if np.iscomplexobj(out):
        raise CallbackError(label, f"returned a complex array (dtype {out.dtype}), {expected}: "
                                   "the solve is real (a complex solve needs a complex A, b "
                                   "or x0)")
    if out.dtype != np.float64:
        raise CallbackError(label, f"returned dtype {out.dtype}, {expected}")
    if out.shape != (n,):
        hint = ": return a 1-D array" if out.ndim == 2 and 1 in out.shape else ""
        raise CallbackError(label, f"returned shape {out.shape}, {expected}{hint}")
    return np.asarray(out)

"""A scipy ``LinearOperator`` M ≈ A⁻¹ as a preconditioner: ``matvec`` is M, ``rmatvec`` Mᵀ."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from .base import PreconditionerBase

__all__ = ["LinearOperatorPreconditioner", "defines_rmatvec"]

_MISSING = object()


def defines_rmatvec(operator: spla.LinearOperator) -> bool:
    """Whether ``operator.rmatvec`` is implemented, told from how it was made (not called).

    A ``LinearOperator(shape, matvec=...)`` made without ``rmatvec`` has none; a subclass
    has one when it overrides ``_rmatvec``, ``_adjoint`` or ``_rmatmat`` (scipy's own rule
    for its default ``_rmatvec``).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse.linalg as spla
    >>> identity = lambda v: v
    >>> defines_rmatvec(spla.LinearOperator((3, 3), matvec=identity, dtype=float))
    False
    >>> defines_rmatvec(spla.LinearOperator((3, 3), matvec=identity, rmatvec=identity,
    ...                                     dtype=float))
    True
    >>> defines_rmatvec(spla.aslinearoperator(np.eye(3)))
    True
    """
    # scipy keeps the callables given to LinearOperator(...) in name-mangled attributes of
    # its private _CustomLinearOperator; there is no public way to ask.
    given = getattr(operator, "_CustomLinearOperator__rmatvec_impl", _MISSING)
    if given is not _MISSING:
        return given is not None
    cls, base = type(operator), spla.LinearOperator
    return (cls._rmatvec is not base._rmatvec or cls._adjoint is not base._adjoint
            or cls._rmatmat is not base._rmatmat)


class LinearOperatorPreconditioner(PreconditionerBase):
    """A preconditioner given as a scipy ``LinearOperator``: ``apply`` is its ``matvec`` and
    ``apply_transpose`` its ``rmatvec`` (so it must have one: the adjoint solve needs Mᵀ).

    Parameters
    ----------
    operator : scipy.sparse.linalg.LinearOperator
        Square, real, with ``matvec`` and ``rmatvec``.

    Attributes
    ----------
    operator : scipy.sparse.linalg.LinearOperator
    shape : tuple of int
    is_symmetric : None
        Unknown: CG is not refused with it, and not chosen against it.

    Raises
    ------
    ValueError
        For a non-square or complex operator, or one made without ``rmatvec``.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse.linalg as spla
    >>> D = np.array([1.0, 2.0, 4.0])
    >>> op = spla.LinearOperator((3, 3), matvec=lambda r: r / D, rmatvec=lambda r: r / D,
    ...                          dtype=float)
    >>> LinearOperatorPreconditioner(op).apply_transpose(np.ones(3))
    array([1.  , 0.5 , 0.25])
    """

    is_symmetric = None

    def __init__(self, operator: Any) -> None:
        if not isinstance(operator, spla.LinearOperator):
            raise TypeError("LinearOperatorPreconditioner: expected a scipy LinearOperator, "
                            f"got {type(operator).__name__}")
        if len(operator.shape) != 2 or operator.shape[0] != operator.shape[1]:
            raise ValueError("LinearOperatorPreconditioner: expected a square operator, got "
                             f"shape {operator.shape}")
        if operator.dtype is not None and np.issubdtype(operator.dtype, np.complexfloating):
            raise ValueError("LinearOperatorPreconditioner: the operator is complex (dtype "
                             f"{operator.dtype}); the solves are real")
        if not defines_rmatvec(operator):
            raise ValueError(
                "LinearOperatorPreconditioner: this LinearOperator was made without rmatvec, "
                "but the adjoint solve needs Mᵀ: pass rmatvec=... (rmatvec=matvec if M is "
                "symmetric), or an object with apply and apply_transpose"
            )
        self.operator = operator
        self.shape = (int(operator.shape[0]), int(operator.shape[1]))

    def apply(self, r: np.ndarray) -> np.ndarray:
        """Return ``M @ r``, the operator's ``matvec``."""
        return self.operator.matvec(r)

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        """Return ``Mᵀ @ r``, the operator's ``rmatvec``."""
        return self.operator.rmatvec(r)

    def __repr__(self) -> str:
        return f"<LinearOperatorPreconditioner of {self.operator!r}>"

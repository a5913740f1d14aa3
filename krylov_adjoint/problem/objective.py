"""Objectives J(θ, x) with their partial derivatives, and ready-made ones."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._checks import real_array, refuse_complex

__all__ = ["Objective", "LinearFunctional", "LeastSquaresMisfit", "Tikhonov"]


class _Deprecated:
    """The default of the deprecated arguments: tells "not given" from any value, None included."""

    def __repr__(self) -> str:
        return "<deprecated>"


_UNSET: Any = _Deprecated()


class Objective:
    """An objective J(θ, x) with ∂J/∂x and ∂J/∂θ.

    Every user callback takes θ first, as the operator's and the right-hand side's do.

    Parameters
    ----------
    J : callable ``(theta, x) -> float``
        The objective.
    dJ_dx : callable ``(theta, x) -> ∂J/∂x``, shape (N,)
        Its partial derivative in the state.
    dJ_dtheta : callable ``(theta, x) -> ∂J/∂θ``, shape (P,), optional
        Its partial derivative in the parameters; omit when J does not depend on θ explicitly.

    The three are keyword-only. The former form ``Objective(value, grad_x, grad_theta)``,
    positional or by those names, with callbacks taking ``(x, theta)``, still works but emits a
    :class:`DeprecationWarning`; the new names are new so that old code cannot reach the θ-first
    form by accident (with P == N a swapped callback would pass every shape check). Giving names
    of both forms raises :class:`TypeError`.

    The methods :meth:`value`, :meth:`grad_x` and :meth:`grad_theta` are the library's
    internal entry points, not user callbacks: they take ``(x, theta)`` and call the user's
    callbacks with θ first.

    Objectives add: ``LeastSquaresMisfit(...) + Tikhonov(...)``.

    Examples
    --------
    >>> import numpy as np
    >>> J = Objective(J=lambda th, x: 0.5 * float(x @ x), dJ_dx=lambda th, x: x)
    >>> J.value(np.array([3.0, 4.0]), None)
    12.5
    """

    def __init__(self, value: Any = _UNSET, grad_x: Any = _UNSET, grad_theta: Any = _UNSET, *,
                 J: Callable[[np.ndarray, np.ndarray], float] | None = None,
                 dJ_dx: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,  # noqa: N803
                 dJ_dtheta: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # noqa: N803
                 ) -> None:
        old = {k: v for k, v in (("value", value), ("grad_x", grad_x),
                                 ("grad_theta", grad_theta)) if v is not _UNSET}
        new = {k: v for k, v in (("J", J), ("dJ_dx", dJ_dx), ("dJ_dtheta", dJ_dtheta))
               if v is not None}
        if old and new:
            raise TypeError(
                f"Objective: give either J=, dJ_dx=, dJ_dtheta= (callbacks (theta, x)) or the "
                f"deprecated value, grad_x, grad_theta (callbacks (x, theta)), not both: got "
                f"{', '.join(old)} and {', '.join(new)}")
        if old:
            if "value" not in old or "grad_x" not in old:
                raise TypeError("Objective: the deprecated form needs value and grad_x; "
                                "use Objective(J=..., dJ_dx=..., dJ_dtheta=...) instead")
            warnings.warn(
                "krylov_adjoint.Objective(value, grad_x, grad_theta) with (x, theta) callbacks "
                "is deprecated; write Objective(J=..., dJ_dx=..., dJ_dtheta=...) with callbacks "
                "taking (theta, x), theta first as in ParametricOperator and RightHandSide, "
                "e.g. Objective(J=lambda theta, x: value(x, theta), "
                "dJ_dx=lambda theta, x: grad_x(x, theta))",
                DeprecationWarning, stacklevel=2)
            _check_callable(old)
            self._J = _swapped(old["value"])
            self._dJ_dx = _swapped(old["grad_x"])
            self._dJ_dtheta = _swapped(old.get("grad_theta"))
            return
        if J is None or dJ_dx is None:
            missing = " and ".join(k for k in ("J", "dJ_dx") if k not in new)
            raise TypeError(f"Objective: missing {missing}; write "
                            f"Objective(J=..., dJ_dx=..., dJ_dtheta=...) with callbacks "
                            f"taking (theta, x)")
        _check_callable(new)
        self._J = J
        self._dJ_dx = dJ_dx
        self._dJ_dtheta = dJ_dtheta

    def value(self, x: np.ndarray, theta: np.ndarray) -> float:
        """J at (θ, x); internal, called by the library with ``(x, theta)``."""
        return self._J(theta, x)

    def grad_x(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂J/∂x at (θ, x); internal, called by the library with ``(x, theta)``."""
        return self._dJ_dx(theta, x)

    def grad_theta(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray | None:
        """∂J/∂θ at (θ, x), or None when J does not depend on θ explicitly; internal, called
        by the library with ``(x, theta)``."""
        return None if self._dJ_dtheta is None else self._dJ_dtheta(theta, x)

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        first, second = self, other

        def grad_theta(th: np.ndarray, x: np.ndarray) -> Any:
            parts = [g for g in (first.grad_theta(x, th), second.grad_theta(x, th))
                     if g is not None]
            if not parts:
                return None
            return parts[0] if len(parts) == 1 else np.asarray(parts[0]) + np.asarray(parts[1])

        return Objective(
            J=lambda th, x: first.value(x, th) + second.value(x, th),
            dJ_dx=lambda th, x: np.asarray(first.grad_x(x, th)) + np.asarray(second.grad_x(x, th)),
            dJ_dtheta=grad_theta,
        )


def _check_callable(callbacks: dict[str, Any]) -> None:
    for label, fn in callbacks.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"objective {label} must be callable, got {type(fn).__name__}")


def _swapped(fn: Callable[[Any, Any], Any] | None) -> Callable[[Any, Any], Any] | None:
    """A deprecated ``(x, theta)`` callback as a θ-first one."""
    if fn is None or not callable(fn):
        return fn
    return lambda theta, x: fn(x, theta)


class LinearFunctional(Objective):
    """J(x) = cᵀx.

    Parameters
    ----------
    c : array, shape (N,)
        Real weights (complex ones are refused: complex systems are not supported yet).

    Examples
    --------
    >>> import numpy as np
    >>> LinearFunctional(np.array([1.0, 2.0])).value(np.array([3.0, 4.0]), None)
    11.0
    """

    def __init__(self, c: np.ndarray) -> None:
        weights = real_array(c, "c")
        weights.flags.writeable = False
        self.c = weights
        super().__init__(J=lambda th, x: float(weights @ x), dJ_dx=lambda th, x: weights)


class LeastSquaresMisfit(Objective):
    """J(x) = ½‖O x − d‖², O a (sparse) observation operator, d the data.

    Parameters
    ----------
    O : scipy.sparse matrix or array, shape (M, N)
        Observation operator; ``None`` means the identity (full-field data).
    d : array, shape (M,)
        Observed data.
    weights : array, shape (M,), optional
        Per-observation weights w: J = ½ Σ wᵢ (O x − d)ᵢ².

    All three must be real: complex data is refused with an
    :class:`~krylov_adjoint.InputError` naming the argument.

    Examples
    --------
    >>> import numpy as np
    >>> J = LeastSquaresMisfit(None, np.array([1.0, 1.0]))
    >>> J.value(np.array([2.0, 1.0]), None)
    0.5
    """

    def __init__(self, O: Any, d: np.ndarray, *, weights: np.ndarray | None = None) -> None:
        refuse_complex(O, "O")
        data = real_array(d, "d")
        data.flags.writeable = False
        obs = None if O is None else sp.csr_matrix(O, dtype=np.float64)
        if obs is not None and obs.shape[0] != data.shape[0]:
            raise ValueError(f"LeastSquaresMisfit: O has {obs.shape[0]} rows but d has "
                             f"{data.shape[0]} entries")
        w = None if weights is None else real_array(weights, "weights")
        if w is not None and w.shape != data.shape:
            raise ValueError(f"LeastSquaresMisfit: weights shape {w.shape} != d shape {data.shape}")
        obsT = None if obs is None else obs.T.tocsr()
        self.O, self.d, self.weights = obs, data, w

        def residual(x: np.ndarray) -> np.ndarray:
            return (x if obs is None else obs @ x) - data

        def value(th: Any, x: np.ndarray) -> float:
            r = residual(x)
            return 0.5 * float(r @ r if w is None else r @ (w * r))

        def grad_x(th: Any, x: np.ndarray) -> np.ndarray:
            r = residual(x)
            if w is not None:
                r = w * r
            return r if obsT is None else obsT @ r

        super().__init__(J=value, dJ_dx=grad_x)


class Tikhonov(Objective):
    """R(θ) = (α/2)‖L(θ − θ_ref)‖², L the identity or a sparse matrix (e.g. a gradient).

    Parameters
    ----------
    alpha : float
        The weight α ≥ 0.
    L : scipy.sparse matrix or array, shape (M, P), optional
        The regularisation operator; ``None`` means the identity.
    theta_ref : array, shape (P,), optional
        The reference θ_ref; ``None`` means zero.

    ``alpha``, ``L`` and ``theta_ref`` must be real (complex data is refused).

    Examples
    --------
    >>> import numpy as np
    >>> R = Tikhonov(2.0, theta_ref=np.zeros(2))
    >>> R.value(None, np.array([1.0, 1.0]))
    2.0
    """

    def __init__(self, alpha: float, *, L: Any = None,
                 theta_ref: np.ndarray | None = None) -> None:
        refuse_complex(alpha, "alpha")
        refuse_complex(L, "L")
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"Tikhonov: alpha must be finite and >= 0, got {alpha}")
        reg = None if L is None else sp.csr_matrix(L, dtype=np.float64)
        regT = None if reg is None else reg.T.tocsr()
        ref = None if theta_ref is None else real_array(theta_ref, "theta_ref")
        self.alpha, self.L, self.theta_ref = float(alpha), reg, ref

        def shifted(th: np.ndarray) -> np.ndarray:
            return th if ref is None else th - ref

        def apply_l(v: np.ndarray) -> np.ndarray:
            return v if reg is None else reg @ v

        def value(th: np.ndarray, x: Any) -> float:
            r = apply_l(shifted(th))
            return 0.5 * self.alpha * float(r @ r)

        def grad_theta(th: np.ndarray, x: Any) -> np.ndarray:
            r = apply_l(shifted(th))
            return self.alpha * (r if regT is None else regT @ r)

        super().__init__(J=value, dJ_dx=lambda th, x: np.zeros_like(x), dJ_dtheta=grad_theta)

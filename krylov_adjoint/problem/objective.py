"""Objectives J(θ, x) with their partial derivatives, and ready-made ones."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._checks import real_array, refuse_complex
from ..errors import MissingCallbackError

__all__ = ["Objective", "LinearFunctional", "LeastSquaresMisfit", "Tikhonov"]


class _Deprecated:
    """The default of the deprecated arguments: tells "not given" from any value, None included."""

    def __repr__(self) -> str:
        return "<deprecated>"


_UNSET: Any = _Deprecated()

SecondOrder = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

#: The second-order callbacks, with what each one computes (for the error messages).
_SECOND_ORDER = {
    "d2J_dx2": "∂²J/∂x²·v",
    "d2J_dxdtheta": "∂/∂θ(∂J/∂x)·dθ",
    "d2J_dthetadx": "∂/∂x(∂J/∂θ)·v",
    "d2J_dtheta2": "∂/∂θ(∂J/∂θ)·dθ",
}


def _zero(theta: Any, x: Any, w: Any) -> None:
    """A second-order term known to vanish identically (internal: the hess_* give None)."""
    return None


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
    d2J_dx2 : callable ``(theta, x, v) -> ∂²J/∂x²·v``, shape (N,), optional
    d2J_dxdtheta : callable ``(theta, x, dtheta) -> ∂/∂θ(∂J/∂x)·dtheta``, shape (N,), optional
    d2J_dthetadx : callable ``(theta, x, v) -> ∂/∂x(∂J/∂θ)·v``, shape (P,), optional
    d2J_dtheta2 : callable ``(theta, x, dtheta) -> ∂/∂θ(∂J/∂θ)·dtheta``, shape (P,), optional
        The second derivatives, needed for Hessian-vector products (Gauss–Newton products
        need ``d2J_dx2`` only). The last three are never needed, and never called, when
        ``dJ_dtheta`` is omitted: they vanish identically then.

    All are keyword-only. The former form ``Objective(value, grad_x, grad_theta)``,
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
    >>> J.missing_second_order
    ('objective.d2J_dx2',)
    >>> J = Objective(J=lambda th, x: 0.5 * float(x @ x), dJ_dx=lambda th, x: x,
    ...               d2J_dx2=lambda th, x, v: v)
    >>> J.hess_xx(np.zeros(2), None, np.array([1.0, 2.0])), J.hess_xtheta(np.zeros(2), None, None)
    (array([1., 2.]), None)
    """

    def __init__(self, value: Any = _UNSET, grad_x: Any = _UNSET, grad_theta: Any = _UNSET, *,
                 J: Callable[[np.ndarray, np.ndarray], float] | None = None,
                 dJ_dx: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,  # noqa: N803
                 dJ_dtheta: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,  # noqa: N803
                 d2J_dx2: SecondOrder | None = None,  # noqa: N803
                 d2J_dxdtheta: SecondOrder | None = None,  # noqa: N803
                 d2J_dthetadx: SecondOrder | None = None,  # noqa: N803
                 d2J_dtheta2: SecondOrder | None = None  # noqa: N803
                 ) -> None:
        old = {k: v for k, v in (("value", value), ("grad_x", grad_x),
                                 ("grad_theta", grad_theta)) if v is not _UNSET}
        second = {k: v for k, v in (("d2J_dx2", d2J_dx2), ("d2J_dxdtheta", d2J_dxdtheta),
                                    ("d2J_dthetadx", d2J_dthetadx), ("d2J_dtheta2", d2J_dtheta2))
                  if v is not None}
        new = {k: v for k, v in (("J", J), ("dJ_dx", dJ_dx), ("dJ_dtheta", dJ_dtheta))
               if v is not None} | second
        #: The second-order callbacks given, by name (internal ones may return None: zero).
        self._second: dict[str, SecondOrder] = {}
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
        self._second = second

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

    def hess_xx(self, x: np.ndarray, theta: np.ndarray, v: np.ndarray) -> np.ndarray | None:
        """∂²J/∂x²·v, or None when identically zero; internal, ``(x, theta)`` order."""
        return self._second_order("d2J_dx2", x, theta, v)

    def hess_xtheta(self, x: np.ndarray, theta: np.ndarray,
                    dtheta: np.ndarray) -> np.ndarray | None:
        """∂/∂θ(∂J/∂x)·dθ (shape (N,)), or None when identically zero; internal."""
        return self._second_order("d2J_dxdtheta", x, theta, dtheta)

    def hess_thetax(self, x: np.ndarray, theta: np.ndarray, v: np.ndarray) -> np.ndarray | None:
        """∂/∂x(∂J/∂θ)·v (shape (P,)), or None when identically zero; internal."""
        return self._second_order("d2J_dthetadx", x, theta, v)

    def hess_thetatheta(self, x: np.ndarray, theta: np.ndarray,
                        dtheta: np.ndarray) -> np.ndarray | None:
        """∂/∂θ(∂J/∂θ)·dθ (shape (P,)), or None when identically zero; internal."""
        return self._second_order("d2J_dtheta2", x, theta, dtheta)

    @property
    def missing_second_order(self) -> tuple[str, ...]:
        """The second-order callbacks missing for Hessian-vector products, e.g.
        ``("objective.d2J_dx2",)``; empty when none is."""
        return tuple(f"objective.{name}" for name in self._needed()
                     if name not in self._second)

    @property
    def missing_gauss_newton(self) -> tuple[str, ...]:
        """The callbacks missing for Gauss–Newton products (which need ``d2J_dx2`` only)."""
        return () if "d2J_dx2" in self._second else ("objective.d2J_dx2",)

    def _needed(self) -> tuple[str, ...]:
        """The second-order terms that do not vanish for want of ∂J/∂θ."""
        return tuple(_SECOND_ORDER) if self._dJ_dtheta is not None else ("d2J_dx2",)

    def _second_order(self, name: str, x: np.ndarray, theta: np.ndarray,
                      w: np.ndarray) -> np.ndarray | None:
        if name not in self._needed():
            return None
        fn = self._second.get(name)
        if fn is None:
            raise MissingCallbackError(
                f"objective.{name} was not supplied: the Hessian needs {_SECOND_ORDER[name]}. "
                f"Pass Objective(..., {name}=...)")
        return fn(theta, x, w)

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

        total = Objective(
            J=lambda th, x: first.value(x, th) + second.value(x, th),
            dJ_dx=lambda th, x: np.asarray(first.grad_x(x, th)) + np.asarray(second.grad_x(x, th)),
            dJ_dtheta=grad_theta,
        )
        missing = {m.removeprefix("objective.")
                   for m in first.missing_second_order + second.missing_second_order}
        total._second = {name: _summed(getattr(Objective, method), first, second)
                         for name, method in zip(_SECOND_ORDER, _HESS_METHODS, strict=True)
                         if name not in missing}
        return total


_HESS_METHODS = ("hess_xx", "hess_xtheta", "hess_thetax", "hess_thetatheta")


def _summed(method: Callable[..., Any], first: Objective, second: Objective) -> SecondOrder:
    """The θ-first callback of a sum's second-order term: None + None = None."""

    def term(th: np.ndarray, x: np.ndarray, w: np.ndarray) -> Any:
        parts = [p for p in (method(first, x, th, w), method(second, x, th, w)) if p is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.asarray(parts[0]) + np.asarray(parts[1])

    return term


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
        Real weights (complex ones are refused: the ready-made objectives are real; write
        the objective of a complex system with ``Objective(J=..., dJ_dx=...)``).

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
        self._second = {"d2J_dx2": _zero}


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

        def hess_xx(th: Any, x: np.ndarray, v: np.ndarray) -> np.ndarray:
            r = v if obs is None else obs @ v
            if w is not None:
                r = w * r
            return r if obsT is None else obsT @ r

        super().__init__(J=value, dJ_dx=grad_x, d2J_dx2=hess_xx)


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

        def hess_thetatheta(th: np.ndarray, x: Any, dth: np.ndarray) -> np.ndarray:
            r = apply_l(dth)
            return self.alpha * (r if regT is None else regT @ r)

        super().__init__(J=value, dJ_dx=lambda th, x: np.zeros_like(x), dJ_dtheta=grad_theta)
        self._second = {"d2J_dx2": _zero, "d2J_dxdtheta": _zero, "d2J_dthetadx": _zero,
                        "d2J_dtheta2": hess_thetatheta}

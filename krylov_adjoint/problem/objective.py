"""Objectives J(x, θ) with their partial derivatives, and ready-made ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._checks import real_array, refuse_complex

__all__ = ["Objective", "LinearFunctional", "LeastSquaresMisfit", "Tikhonov"]


class Objective:
    """An objective J(x, θ) with ∂J/∂x and ∂J/∂θ.

    Parameters
    ----------
    value : callable ``(x, theta) -> float``
    grad_x : callable ``(x, theta) -> ∂J/∂x``, shape (N,)
    grad_theta : callable ``(x, theta) -> ∂J/∂θ``, shape (P,), optional
        Omit when J does not depend on θ explicitly.

    Objectives add: ``LeastSquaresMisfit(...) + Tikhonov(...)``.

    Examples
    --------
    >>> import numpy as np
    >>> J = Objective(lambda x, th: 0.5 * float(x @ x), lambda x, th: x)
    >>> J.value(np.array([3.0, 4.0]), None)
    12.5
    """

    def __init__(self, value: Callable[[np.ndarray, np.ndarray], float],
                 grad_x: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 grad_theta: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                 ) -> None:
        for label, fn in (("value", value), ("grad_x", grad_x), ("grad_theta", grad_theta)):
            if fn is not None and not callable(fn):
                raise TypeError(f"objective {label} must be callable, got {type(fn).__name__}")
        self._value = value
        self._grad_x = grad_x
        self._grad_theta = grad_theta

    def value(self, x: np.ndarray, theta: np.ndarray) -> float:
        """J(x, θ)."""
        return self._value(x, theta)

    def grad_x(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂J/∂x at (x, θ)."""
        return self._grad_x(x, theta)

    def grad_theta(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray | None:
        """∂J/∂θ at (x, θ), or None when J does not depend on θ explicitly."""
        return None if self._grad_theta is None else self._grad_theta(x, theta)

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        first, second = self, other

        def grad_theta(x: np.ndarray, theta: np.ndarray) -> Any:
            parts = [g for g in (first.grad_theta(x, theta), second.grad_theta(x, theta))
                     if g is not None]
            if not parts:
                return None
            return parts[0] if len(parts) == 1 else np.asarray(parts[0]) + np.asarray(parts[1])

        return Objective(
            lambda x, th: first.value(x, th) + second.value(x, th),
            lambda x, th: np.asarray(first.grad_x(x, th)) + np.asarray(second.grad_x(x, th)),
            grad_theta,
        )


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
        super().__init__(lambda x, th: float(weights @ x), lambda x, th: weights)


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

        def value(x: np.ndarray, th: Any) -> float:
            r = residual(x)
            return 0.5 * float(r @ r if w is None else r @ (w * r))

        def grad_x(x: np.ndarray, th: Any) -> np.ndarray:
            r = residual(x)
            if w is not None:
                r = w * r
            return r if obsT is None else obsT @ r

        super().__init__(value, grad_x)


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

        def value(x: Any, th: np.ndarray) -> float:
            r = apply_l(shifted(th))
            return 0.5 * self.alpha * float(r @ r)

        def grad_theta(x: Any, th: np.ndarray) -> np.ndarray:
            r = apply_l(shifted(th))
            return self.alpha * (r if regT is None else regT @ r)

        super().__init__(value, lambda x, th: np.zeros_like(x), grad_theta)

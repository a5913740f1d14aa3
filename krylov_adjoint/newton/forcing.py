"""Forcing terms of inexact Newton: how accurately each Newton system is solved."""

from __future__ import annotations

import math

__all__ = ["EisenstatWalker", "ConstantForcing", "as_forcing"]


class EisenstatWalker:
    """Eisenstat–Walker choice 2 with the safeguards of Kelley (1995, §6.3).

    ``η_k = γ (‖g_k‖ / ‖g_{k−1}‖)^β`` (γ = 0.9, β = 2), then

    * not dropping too fast: when ``γ η_{k−1}^β > 0.1``, ``η_k ≥ γ η_{k−1}^β`` (a lucky
      small ratio must not make the next solve needlessly exact);
    * ``η_k ≤ η_max``;
    * no oversolving near the end: ``η_k ≥ ½ τ / ‖g_k‖``, τ the final target on ‖g‖ (a
      system solved to ``½τ`` already meets the stopping rule).

    The first term is ``eta0``. With β = 2 the outer iteration converges quadratically near a
    non-degenerate minimiser (Eisenstat and Walker, SIAM J. Sci. Comput. 17, 1996).

    Parameters
    ----------
    eta0, eta_max, gamma, beta : float
        The constants above (defaults 0.5, 0.9, 0.9, 2).

    Examples
    --------
    >>> ew = EisenstatWalker()
    >>> ew.next(1.0, target=1e-8)          # first iteration
    0.5
    >>> round(ew.next(0.1, target=1e-8), 6)  # ratio 0.1: 0.9 * 0.01, safeguard 0.9 * 0.25
    0.225
    """

    def __init__(self, *, eta0: float = 0.5, eta_max: float = 0.9, gamma: float = 0.9,
                 beta: float = 2.0) -> None:
        for name, value in (("eta0", eta0), ("eta_max", eta_max), ("gamma", gamma)):
            if not 0 < value < 1:
                raise ValueError(f"EisenstatWalker: {name} must be in (0, 1), got {value}")
        if not 1 < beta <= 2:
            raise ValueError(f"EisenstatWalker: beta must be in (1, 2], got {beta}")
        self.eta0, self.eta_max, self.gamma, self.beta = eta0, eta_max, gamma, beta
        self._previous_norm: float | None = None
        self._previous_eta: float | None = None

    def next(self, gradient_norm: float, *, target: float) -> float:
        """The forcing term for the system at a point where ``‖g‖ = gradient_norm``."""
        if self._previous_norm is None or self._previous_eta is None:
            eta = self.eta0
        else:
            ratio = gradient_norm / self._previous_norm
            eta = self.gamma * ratio ** self.beta
            floor = self.gamma * self._previous_eta ** self.beta
            if floor > 0.1:
                eta = max(eta, floor)
            eta = min(eta, self.eta_max)
        if gradient_norm > 0:
            eta = max(eta, 0.5 * target / gradient_norm)
        eta = min(eta, self.eta_max)
        self._previous_norm, self._previous_eta = gradient_norm, eta
        return eta


class ConstantForcing:
    """The same forcing term at every iteration (linear convergence at rate ~η)."""

    def __init__(self, eta: float) -> None:
        if not 0 < eta < 1:
            raise ValueError(f"forcing: a constant forcing term must be in (0, 1), got {eta}")
        self.eta = float(eta)

    def next(self, gradient_norm: float, *, target: float) -> float:
        """``η`` (the arguments are ignored)."""
        return self.eta


def as_forcing(forcing: str | float | EisenstatWalker | ConstantForcing
               ) -> EisenstatWalker | ConstantForcing:
    """A fresh forcing rule from ``"eisenstat-walker"``, a float in (0, 1) or a rule object."""
    if isinstance(forcing, (EisenstatWalker, ConstantForcing)):
        return forcing
    if isinstance(forcing, str):
        if forcing.lower().replace("_", "-") == "eisenstat-walker":
            return EisenstatWalker()
        raise ValueError(f"forcing: unknown rule {forcing!r}; use 'eisenstat-walker' or a "
                         "constant in (0, 1)")
    value = float(forcing)
    if not math.isfinite(value):
        raise ValueError(f"forcing: must be finite, got {forcing}")
    return ConstantForcing(value)

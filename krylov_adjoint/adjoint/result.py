"""What a gradient (or a directional derivative) evaluation returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..krylov.result import SolveResult
from .accuracy import AccuracyReport, ErrorEstimate

__all__ = ["GradientResult", "TangentResult", "HessianResult"]


@dataclass(frozen=True)
class GradientResult:
    """J(θ), dJ/dθ and the report of both solves.

    Attributes
    ----------
    objective : float
        J(x(θ), θ).
    gradient : ndarray, shape (P,)
        dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ).
    x : ndarray, shape (N,)
        The primal solution.
    adjoint : ndarray, shape (N,)
        λ, the solution of A(θ)ᵀλ = ∂J/∂x.
    primal : SolveResult
        Iterations, residual history, reason of the primal solve. With recycling, its
        ``extra`` holds ``recycled_dimension`` and ``iterations_saved`` (an estimate, see
        :mod:`krylov_adjoint.krylov.recycling`).
    adjoint_solve : SolveResult
        The same for the adjoint solve.
    times : dict
        Wall times in seconds of the phases ``setup`` (assembly and preconditioner set-up, 0
        when reused), ``primal``, ``objective``, ``adjoint``, ``gradient`` (the VJPs) and
        ``total``.
    preconditioner_rebuilt : bool
        True when the preconditioner was set up for this call.
    preconditioner_note : str
        Why it was (or was not) set up.
    extra : dict
        Other records, e.g. ``abandoned_primal`` (solves stopped for a new set-up).
    accuracy : AccuracyReport or None
        The tolerances used and why (fixed, or chosen by the adaptive mode).
    error_estimate : ErrorEstimate or None
        The certificate: the dual-weighted residual ``λᵀr`` and the estimated gradient error
        (None with ``error_estimate=False``); see :mod:`krylov_adjoint.adjoint.accuracy`.
    """

    objective: float
    gradient: np.ndarray
    x: np.ndarray
    adjoint: np.ndarray
    primal: SolveResult
    adjoint_solve: SolveResult
    times: dict[str, float]
    preconditioner_rebuilt: bool = False
    preconditioner_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    accuracy: AccuracyReport | None = None
    error_estimate: ErrorEstimate | None = None

    @property
    def objective_corrected(self) -> float:
        """``J + λᵀr``, the objective corrected by the dual-weighted residual (J itself
        without an error estimate)."""
        if self.error_estimate is None:
            return self.objective
        return self.objective + self.error_estimate.objective_correction

    @property
    def gradient_norm(self) -> float:
        """‖dJ/dθ‖₂."""
        return float(np.linalg.norm(self.gradient))

    @property
    def n_params(self) -> int:
        """P, the length of θ."""
        return int(self.gradient.size)

    def summary(self) -> str:
        """A few lines: J, ‖dJ/dθ‖, both solves, phase times."""
        t = self.times
        return "\n".join([
            f"J = {self.objective:.10e}, |dJ/dtheta| = {self.gradient_norm:.6e} "
            f"(P = {self.n_params})",
            f"primal : {self.primal.summary()}",
            f"adjoint: {self.adjoint_solve.summary()}",
            "times  : " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items()),
            f"preconditioner: {self.preconditioner_note}",
            *self._accuracy_lines(),
        ])

    def _accuracy_lines(self) -> list[str]:
        lines = []
        if self.accuracy is not None:
            a = self.accuracy
            lines.append(f"accuracy: {a.mode}, rtol {a.primal_rtol:.1e} / {a.adjoint_rtol:.1e}"
                         f" (primal / adjoint), {a.rounds} round(s): {a.reason}")
        if self.error_estimate is not None:
            e = self.error_estimate
            lines.append(f"estimates: |dJ/dtheta error| ~ {e.gradient_error:.2e} (relative "
                         f"{e.gradient_relative_error:.1e}), J + lambda^T r = "
                         f"{self.objective_corrected:.10e}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly record (no arrays), for logs and benchmarks."""
        return {
            "objective": self.objective,
            "gradient_norm": self.gradient_norm,
            "primal_iterations": self.primal.iterations,
            "primal_reason": self.primal.reason.name,
            "adjoint_iterations": self.adjoint_solve.iterations,
            "adjoint_reason": self.adjoint_solve.reason.name,
            "preconditioner_rebuilt": self.preconditioner_rebuilt,
            **_recycling(self.primal, "primal"), **_recycling(self.adjoint_solve, "adjoint"),
            **{f"{k}_s": v for k, v in self.times.items()},
            **({} if self.accuracy is None else
               {f"accuracy_{k}": v for k, v in self.accuracy.as_dict().items()}),
            **({} if self.error_estimate is None else
               {f"estimate_{k}": v for k, v in self.error_estimate.as_dict().items()}),
        }


def _recycling(solve: SolveResult, phase: str) -> dict[str, Any]:
    """The recycling report of a solve, for :meth:`GradientResult.as_dict` (empty without)."""
    return {f"{phase}_{name}": solve.extra[name]
            for name in ("recycled_dimension", "iterations_saved") if name in solve.extra}


@dataclass(frozen=True)
class TangentResult:
    """J(θ) and the directional derivative dJ/dθ·dθ from one tangent (forward) solve."""

    objective: float
    derivative: float
    x: np.ndarray
    tangent: np.ndarray
    primal: SolveResult
    tangent_solve: SolveResult


@dataclass(frozen=True)
class HessianResult:
    """H·dθ (or the Gauss–Newton action) and the report of its two solves.

    Attributes
    ----------
    product : ndarray, shape (P,)
        The Hessian action H·dθ (the Gauss–Newton one when ``gauss_newton``).
    tangent : ndarray, shape (N,)
        ẋ = (dx/dθ)·dθ, from ``A ẋ = (∂b/∂θ)dθ − (∂A/∂θ·dθ)x``.
    second_adjoint : ndarray, shape (N,)
        λ̇, from the second-order adjoint solve with Aᵀ.
    tangent_solve, adjoint_solve : SolveResult
        The two solves (preconditioned by M and Mᵀ from the gradient's set-up).
    gauss_newton : bool
        True for the Gauss–Newton action (no second-order terms of A, b or λ).
    times : dict
        Wall times of ``gradient`` (0 when the gradient at θ was reused), ``tangent``,
        ``adjoint``, ``product`` (the callbacks) and ``total``.
    gradient_reused : bool
        True when x and λ came from the last gradient at the same θ.
    """

    product: np.ndarray
    tangent: np.ndarray
    second_adjoint: np.ndarray
    tangent_solve: SolveResult
    adjoint_solve: SolveResult
    gauss_newton: bool
    times: dict[str, float]
    gradient_reused: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines: ‖H dθ‖, both solves, phase times."""
        kind = "Gauss-Newton" if self.gauss_newton else "Hessian"
        return "\n".join([
            f"{kind} action: |H dtheta| = {float(np.linalg.norm(self.product)):.6e}",
            f"tangent: {self.tangent_solve.summary()}",
            f"adjoint: {self.adjoint_solve.summary()}",
            "times  : " + ", ".join(f"{k} {v:.3f} s" for k, v in self.times.items()),
        ])

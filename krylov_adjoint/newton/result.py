"""What :func:`~krylov_adjoint.newton.newton_cg` returns: the result and its history."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["NewtonIteration", "NewtonResult"]


@dataclass(frozen=True)
class NewtonIteration:
    """The record of one outer Newton iteration (from θ_k to θ_{k+1}).

    Attributes
    ----------
    iteration : int
        k + 1 (1 for the first step).
    objective : float
        J(θ_k), at the start of the iteration.
    gradient_norm : float
        ‖g(θ_k)‖ in the norm of ``dot``.
    hessian : str
        ``"gauss-newton"`` or ``"newton"``: the Hessian action used by CG.
    forcing : float
        η_k: CG stopped at ``‖H p + g‖ ≤ η_k ‖g‖``.
    cg_iterations : int
        CG iterations (= Hessian actions) of this iteration.
    cg_reason : str
        ``"converged"``, ``"negative_curvature"`` or ``"maxiter"``.
    negative_curvature : int
        Directions of non-positive curvature met (1 when CG was truncated, else 0).
    step_length : float
        The accepted α of ``θ_{k+1} = θ_k + α p`` (the last one tried when the line search
        failed).
    backtracks : int
        Step halvings of the Armijo line search.
    objective_new : float
        J(θ_{k+1}) (the last trial value when the line search failed).
    gradient_evaluations, hessian_actions, objective_evaluations : int
        Cumulative counts since the start, after this iteration.
    solves : int
        Cumulative linear solves: 2 per gradient, 2 per Hessian action, 1 per J-only
        evaluation.
    elapsed : float
        Seconds since the start.
    """

    iteration: int
    objective: float
    gradient_norm: float
    hessian: str
    forcing: float
    cg_iterations: int
    cg_reason: str
    negative_curvature: int
    step_length: float
    backtracks: int
    objective_new: float
    gradient_evaluations: int
    hessian_actions: int
    objective_evaluations: int
    solves: int
    elapsed: float

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (JSON-friendly)."""
        return asdict(self)


@dataclass(frozen=True)
class NewtonResult:
    """The outcome of :func:`~krylov_adjoint.newton.newton_cg`.

    Attributes
    ----------
    theta : ndarray
        The last accepted iterate (this rank's part under MPI).
    objective : float
        J(theta).
    gradient : ndarray
        dJ/dθ at theta (this rank's part).
    gradient_norm : float
        ‖gradient‖ in the norm of ``dot`` (global under MPI).
    initial_gradient_norm : float
        ‖g(θ₀)‖.
    target : float
        The stopping target on ‖g‖: ``max(gtol·‖g(θ₀)‖, gatol)``.
    iterations : int
        Newton steps taken (accepted or, for a failed line search, attempted).
    converged : bool
        True when ``gradient_norm ≤ target``.
    reason : str
        ``"converged"``, ``"maxiter"`` or ``"line_search_failed"``.
    message : str
        A sentence saying what happened, with the numbers.
    history : tuple of NewtonIteration
        One frozen record per iteration.
    gradient_evaluations, hessian_actions, objective_evaluations : int
        Totals (a gradient evaluation also gives J; a gradient a Hessian action had to
        recompute, ``gradient_reused=False`` in its result, is counted too).
    solves : int
        Total linear solves: 2 per gradient, 2 per Hessian action, 1 per J-only evaluation.
    """

    theta: np.ndarray
    objective: float
    gradient: np.ndarray
    gradient_norm: float
    initial_gradient_norm: float
    target: float
    iterations: int
    converged: bool
    reason: str
    message: str
    history: tuple[NewtonIteration, ...]
    gradient_evaluations: int
    hessian_actions: int
    objective_evaluations: int
    solves: int

    @property
    def cg_iterations(self) -> int:
        """CG iterations summed over the Newton iterations."""
        return sum(rec.cg_iterations for rec in self.history)

    @property
    def negative_curvature(self) -> int:
        """Newton iterations whose CG was truncated on negative curvature."""
        return sum(rec.negative_curvature for rec in self.history)

    def summary(self) -> str:
        """A table of the iterations and a last line with the outcome and the costs."""
        lines = [" it  H    J                 |g|        eta       CG  neg  alpha     bt"]
        for rec in self.history:
            lines.append(
                f"{rec.iteration:3d}  {'GN' if rec.hessian == 'gauss-newton' else 'N '}  "
                f"{rec.objective:.10e}  {rec.gradient_norm:.3e}  {rec.forcing:.2e}  "
                f"{rec.cg_iterations:3d}  {rec.negative_curvature:3d}  "
                f"{rec.step_length:.2e}  {rec.backtracks:2d}")
        lines.append(
            f"{self.reason}: {self.message} ({self.gradient_evaluations} gradients, "
            f"{self.hessian_actions} Hessian actions, {self.objective_evaluations} J-only "
            f"evaluations: {self.solves} solves)")
        return "\n".join(lines)

"""Results of Krylov solves: one reason enum for every backend, and the result record."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ConvergenceReason", "SolveResult"]


class ConvergenceReason(enum.Enum):
    """Why a Krylov solve stopped. Shared by the serial and PETSc backends.

    Positive values mean convergence, negative values failure; the values are those of
    PETSc's ``KSPConvergedReason`` where PETSc has the reason. ``CONVERGED_ZERO_RHS`` (b = 0,
    x = 0 without iterating) and ``DIVERGED_STAGNATION`` (the true residual stopped decreasing
    above the target: the tolerance is below the attainable accuracy) are the library's own.
    """

    CONVERGED_RTOL = 2
    CONVERGED_ATOL = 3
    CONVERGED_HAPPY_BREAKDOWN = 7
    CONVERGED_ZERO_RHS = 10
    DIVERGED_OTHER = -1
    DIVERGED_MAXITER = -3
    DIVERGED_DTOL = -4
    DIVERGED_BREAKDOWN = -5
    DIVERGED_INDEFINITE_PC = -8
    DIVERGED_NAN = -9
    DIVERGED_INDEFINITE_MATRIX = -10
    DIVERGED_STAGNATION = -100

    @property
    def converged(self) -> bool:
        """True for the ``CONVERGED_*`` reasons."""
        return self.value > 0


@dataclass(frozen=True)
class SolveResult:
    """The outcome of one Krylov solve.

    Attributes
    ----------
    x : ndarray
        The computed solution (the last iterate when the solve failed).
    reason : ConvergenceReason
    iterations : int
        Krylov iterations (applications of the operator after the initial residual).
    residual_norms : ndarray
        ‖b − A xₖ‖₂ for k = 0..iterations: the unpreconditioned residual, as estimated by
        the method's recurrence (exact for right-preconditioned GMRES, CG and BiCGStab in
        exact arithmetic); the last entry is recomputed explicitly.
    target : float
        The stopping threshold ``max(rtol * ‖b‖, atol)``.
    rhs_norm : float
        ‖b‖₂.
    seconds : float
        Wall time of the solve.
    method : str
        ``"gmres"``, ``"cg"``, ``"bicgstab"`` (or the PETSc KSP type).
    message : str
        A human-readable explanation, naming the culprit on breakdown.
    """

    x: np.ndarray
    reason: ConvergenceReason
    iterations: int
    residual_norms: np.ndarray
    target: float
    rhs_norm: float
    seconds: float
    method: str
    message: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """True when :attr:`reason` is a ``CONVERGED_*`` reason."""
        return self.reason.converged

    @property
    def residual_norm(self) -> float:
        """The final true residual norm ‖b − A x‖₂."""
        return float(self.residual_norms[-1]) if len(self.residual_norms) else 0.0

    def summary(self) -> str:
        """One line: method, reason, iterations, final residual, time."""
        return (f"{self.method}: {self.reason.name} in {self.iterations} iterations, "
                f"residual {self.residual_norm:.2e} (target {self.target:.2e}), "
                f"{self.seconds:.3f} s")

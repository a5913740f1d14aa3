"""BiCGStab with right preconditioning."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._norm import norm
from ._run import KrylovRun
from .result import ConvergenceReason, SolveResult

Apply = Callable[[np.ndarray], np.ndarray]


def bicgstab(matvec: Apply, b: np.ndarray, x: np.ndarray, r: np.ndarray, run: KrylovRun, *,
             precond: Apply, maxiter: int, restart: int = 0) -> SolveResult:
    """Right-preconditioned BiCGStab; one iteration applies A and M twice each.

    A vanishing ρ = r̂ᵀr, r̂ᵀv or ω reports ``DIVERGED_BREAKDOWN``. On complex vectors
    the inner products are Hermitian (r̂ᴴr, r̂ᴴv, tᴴs) and ρ, α, ω complex.
    """
    r_hat = r.copy()
    p = np.zeros_like(r)
    v = np.zeros_like(r)
    rho = alpha = omega = 1.0

    def breakdown(what: str) -> SolveResult:
        return run.finish(x, ConvergenceReason.DIVERGED_BREAKDOWN,
                          f"BiCGStab breakdown: {what} vanished at iteration {run.iterations}")

    def confirm() -> tuple[SolveResult | None, np.ndarray]:
        """Check the true residual: a final result (converged or stagnated), or None and the
        true residual to go on from."""
        true_r = b - matvec(x)
        rnorm = norm(true_r)
        run.replace_last(rnorm)
        if rnorm <= run.target:
            return run.finish(x, run.converged_reason), true_r
        if run.stagnated(rnorm):
            return run.stagnation(x), true_r
        return None, true_r

    while True:
        rho_next = np.vdot(r_hat, r)
        run.check_finite(rho_next)
        if rho_next == 0.0:
            return breakdown("ρ = r̂ᵀr")
        beta = (rho_next / rho) * (alpha / omega)
        p = r + beta * (p - omega * v)
        p_hat = precond(p)
        v = matvec(p_hat)
        denom = np.vdot(r_hat, v)
        run.check_finite(denom, preconditioned=p_hat, product=v)
        if denom == 0.0:
            return breakdown("r̂ᵀAMp")
        alpha = rho_next / denom
        s = r - alpha * v
        s_norm = norm(s)
        if s_norm <= run.target:
            x += alpha * p_hat
            run.iterations += 1
            run.record(s_norm)
            done, r = confirm()
            if done is not None:
                return done
            if run.iterations >= maxiter:
                return run.finish(x, ConvergenceReason.DIVERGED_MAXITER)
            # the recurrence drifted from the true residual: restart from the latter
            r_hat = r.copy()
            p = np.zeros_like(r)
            v = np.zeros_like(r)
            rho = alpha = omega = 1.0
            continue
        s_hat = precond(s)
        t = matvec(s_hat)
        t_norm = norm(t)
        run.check_finite(t_norm, preconditioned=s_hat, product=t)
        if t_norm == 0.0:
            return breakdown("‖AMs‖")
        omega = np.vdot(t, s) / t_norm / t_norm  # tᴴs / tᴴt, without forming tᴴt (underflow)
        x += alpha * p_hat + omega * s_hat
        r = s - omega * t
        rnorm = norm(r)
        run.iterations += 1
        run.record(rnorm)
        if rnorm <= run.target:
            done, r = confirm()
            if done is not None:
                return done
        if run.iterations >= maxiter:
            return run.finish(x, ConvergenceReason.DIVERGED_MAXITER)
        if omega == 0.0:
            return breakdown("ω")
        rho = rho_next

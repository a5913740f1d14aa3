"""Preconditioned conjugate gradients, for symmetric positive definite A and M."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._checks import readonly
from ._norm import norm
from ._run import KrylovRun
from .result import ConvergenceReason, SolveResult

Apply = Callable[[np.ndarray], np.ndarray]


def cg(matvec: Apply, b: np.ndarray, x: np.ndarray, r: np.ndarray, run: KrylovRun, *,
       precond: Apply, maxiter: int, restart: int = 0) -> SolveResult:
    """Preconditioned CG; stops on the recurrence residual, confirmed explicitly at the end.

    A non-positive curvature pᵀAp reports ``DIVERGED_INDEFINITE_MATRIX``; a non-positive
    rᵀMr reports ``DIVERGED_INDEFINITE_PC``. On complex vectors the inner products are
    Hermitian (pᴴAp, rᴴMr: A and M Hermitian positive definite).
    """
    # r and p are updated in place: their read-only aliases for the callbacks are made once
    # per vector, not once per call.
    r_in = readonly(r)
    z = precond(r_in)
    rho = float(np.vdot(r, z).real)
    run.check_finite(rho, preconditioned=z)
    p = z.copy()
    p_in = readonly(p)
    while True:
        if rho <= 0.0:
            return run.finish(x, ConvergenceReason.DIVERGED_INDEFINITE_PC,
                              f"CG breakdown: rᵀMr = {rho:.3e} <= 0, the preconditioner is not "
                              "positive definite")
        q = matvec(p_in)
        curvature = float(np.vdot(p, q).real)
        run.check_finite(curvature, product=q)
        if curvature <= 0.0:
            return run.finish(x, ConvergenceReason.DIVERGED_INDEFINITE_MATRIX,
                              f"CG breakdown: pᵀAp = {curvature:.3e} <= 0, the operator is not "
                              "positive definite")
        alpha = rho / curvature
        x += alpha * p
        r -= alpha * q
        rnorm = norm(r)
        run.iterations += 1
        run.record(rnorm)
        restart = False
        if rnorm <= run.target:
            r = b - matvec(x)
            r_in = readonly(r)
            rnorm = norm(r)
            run.replace_last(rnorm)
            if rnorm <= run.target:
                return run.finish(x, run.converged_reason)
            if run.stagnated(rnorm):
                return run.stagnation(x)
            restart = True  # the recurrence drifted: restart from the true residual
        if run.iterations >= maxiter:
            return run.finish(x, ConvergenceReason.DIVERGED_MAXITER)
        z = precond(r_in)
        rho_next = float(np.vdot(r, z).real)
        run.check_finite(rho_next, preconditioned=z)
        if restart:
            p = z.copy()
            p_in = readonly(p)
        else:
            p *= rho_next / rho
            p += z
        rho = rho_next

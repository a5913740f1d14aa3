"""Preconditioned COCG, conjugate orthogonal conjugate gradients, for complex symmetric A."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._checks import readonly
from ._norm import norm
from ._run import KrylovRun
from .result import ConvergenceReason, SolveResult

Apply = Callable[[np.ndarray], np.ndarray]


def cocg(matvec: Apply, b: np.ndarray, x: np.ndarray, r: np.ndarray, run: KrylovRun, *,
         precond: Apply, maxiter: int, restart: int = 0) -> SolveResult:
    """COCG (van der Vorst and Melissen, 1990): CG with the bilinear form uᵀv in place of
    the Hermitian uᴴv, for a complex symmetric A (Aᵀ = A, e.g. Helmholtz with an impedance or
    PML boundary) and a complex symmetric M. One product with A and one with M per
    iteration and short recurrences, where GMRES keeps a basis; on real data it is CG.

    Stops on the recurrence residual, confirmed explicitly at the end (as CG). A vanishing
    rᵀMr or pᵀAp (a quasi-null vector: uᵀu = 0 happens for u ≠ 0 in ℂᴺ) reports
    ``DIVERGED_BREAKDOWN``.
    """
    r_in = readonly(r)
    z = precond(r_in)
    rho = np.dot(r, z)
    run.check_finite(rho, preconditioned=z)
    p = z.copy()
    p_in = readonly(p)
    while True:
        if rho == 0:
            return run.finish(x, ConvergenceReason.DIVERGED_BREAKDOWN,
                              f"COCG breakdown: rᵀMr = 0 at iteration {run.iterations}")
        q = matvec(p_in)
        curvature = np.dot(p, q)
        run.check_finite(curvature, product=q)
        if curvature == 0:
            return run.finish(x, ConvergenceReason.DIVERGED_BREAKDOWN,
                              f"COCG breakdown: pᵀAp = 0 at iteration {run.iterations}")
        alpha = rho / curvature
        x += alpha * p
        r -= alpha * q
        rnorm = norm(r)
        run.iterations += 1
        run.record(rnorm)
        restart_now = False
        if rnorm <= run.target:
            r = b - matvec(x)
            r_in = readonly(r)
            rnorm = norm(r)
            run.replace_last(rnorm)
            if rnorm <= run.target:
                return run.finish(x, run.converged_reason)
            if run.stagnated(rnorm):
                return run.stagnation(x)
            restart_now = True  # the recurrence drifted: restart from the true residual
        if run.iterations >= maxiter:
            return run.finish(x, ConvergenceReason.DIVERGED_MAXITER)
        z = precond(r_in)
        rho_next = np.dot(r, z)
        run.check_finite(rho_next, preconditioned=z)
        if restart_now:
            p = z.copy()
            p_in = readonly(p)
        else:
            p *= rho_next / rho
            p += z
        rho = rho_next

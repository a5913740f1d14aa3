"""Steihaug's truncated conjugate gradients for the Newton system ``H p = −g``.

The inner solver of :func:`~krylov_adjoint.newton.newton_cg`. ``H`` is reached only through
Hessian actions (each one costs two linear solves of the adjoint solver), so the loop keeps
one action per iteration and stops early: at the forcing tolerance, or at the first direction
of non-positive curvature (Steihaug 1983), where the Newton model has no minimiser and the
step computed so far (a descent direction) is returned instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["SteihaugResult", "steihaug_cg"]

Vector = np.ndarray
Dot = Callable[[Vector, Vector], float]


@dataclass(frozen=True)
class SteihaugResult:
    """What :func:`steihaug_cg` returns.

    Attributes
    ----------
    step : ndarray
        The (approximate, possibly truncated) Newton step p.
    iterations : int
        CG iterations, i.e. Hessian actions.
    reason : str
        ``"converged"`` (``‖H p + g‖ ≤ rtol·‖g‖``), ``"negative_curvature"`` (truncated at a
        direction d with ``dᵀH d ≤ 0``) or ``"maxiter"``.
    residual_norm : float
        ``‖H p + g‖`` as tracked by the recurrence, in the norm of ``dot``.
    target : float
        ``rtol·‖g‖``.
    curvature : float
        ``dᵀH d / dᵀd`` of the last direction tried (negative or zero when truncated).
    """

    step: Vector
    iterations: int
    reason: str
    residual_norm: float
    target: float
    curvature: float

    @property
    def negative_curvature(self) -> bool:
        """True when the iteration stopped on a direction of non-positive curvature."""
        return self.reason == "negative_curvature"


def steihaug_cg(hessp: Callable[[Vector], Vector], g: Vector, *, rtol: float,
                maxiter: int, precondition: Callable[[Vector], Vector] | None = None,
                dot: Dot | None = None) -> SteihaugResult:
    """Preconditioned CG on ``H p = −g`` from ``p = 0``, truncated on negative curvature.

    Parameters
    ----------
    hessp : callable ``v -> H v``
        The Hessian action (symmetric; need not be positive definite).
    g : ndarray
        The gradient (this rank's part under MPI).
    rtol : float
        Stop when ``‖H p + g‖ ≤ rtol·‖g‖`` (the unpreconditioned residual, in the norm of
        ``dot``): the forcing term of inexact Newton.
    maxiter : int
        At most this many Hessian actions.
    precondition : callable ``r -> M r``, optional
        M symmetric positive definite, approximating ``H⁻¹`` (e.g. the inverse of the
        regularisation Hessian). None is the identity.
    dot : callable ``(a, b) -> float``, optional
        The inner product of θ-vectors; default ``numpy.dot``. Under MPI pass a global one
        (the same on every rank), e.g. ``lambda a, b: comm.allreduce(a @ b)``.

    Returns
    -------
    SteihaugResult
        The step and how the iteration ended.

    Notes
    -----
    Every iterate ``p_k`` of CG from zero with positive curvature so far satisfies
    ``gᵀp_k < 0`` (it minimises the quadratic model on a Krylov space containing ``M g``),
    so the returned step is a descent direction. When the very first direction has
    non-positive curvature the step returned is the preconditioned steepest descent ``−M g``.

    Examples
    --------
    >>> import numpy as np
    >>> H = np.diag([1.0, 2.0, 4.0])
    >>> res = steihaug_cg(lambda v: H @ v, np.ones(3), rtol=1e-10, maxiter=10)
    >>> res.reason, res.iterations, np.round(res.step, 6)
    ('converged', 3, array([-1.  , -0.5 , -0.25]))
    >>> steihaug_cg(lambda v: -v, np.ones(3), rtol=1e-10, maxiter=10).reason
    'negative_curvature'
    """
    if not (rtol >= 0 and math.isfinite(rtol)):
        raise ValueError(f"steihaug_cg: rtol must be finite and >= 0, got {rtol}")
    if maxiter < 1:
        raise ValueError(f"steihaug_cg: maxiter must be >= 1, got {maxiter}")
    dot = np.dot if dot is None else dot
    apply_m = (lambda v: v) if precondition is None else precondition

    p = np.zeros_like(g, dtype=np.float64)
    r = np.array(g, dtype=np.float64)          # r = H p + g
    z = np.asarray(apply_m(r), dtype=np.float64)
    d = -z
    rz = float(dot(r, z))
    rnorm = math.sqrt(float(dot(r, r)))
    target = rtol * rnorm
    curvature = math.nan
    if rnorm <= target or rnorm == 0.0:
        return SteihaugResult(p, 0, "converged", rnorm, target, curvature)
    for k in range(1, maxiter + 1):
        Hd = np.asarray(hessp(d), dtype=np.float64)
        dhd = float(dot(d, Hd))
        curvature = dhd / float(dot(d, d))
        if not dhd > 0:  # also catches NaN: never step along a direction of unknown sign
            step = d if k == 1 else p
            return SteihaugResult(step, k, "negative_curvature", rnorm, target, curvature)
        alpha = rz / dhd
        p = p + alpha * d
        r = r + alpha * Hd
        rnorm = math.sqrt(float(dot(r, r)))
        if rnorm <= target:
            return SteihaugResult(p, k, "converged", rnorm, target, curvature)
        z = np.asarray(apply_m(r), dtype=np.float64)
        rz_new = float(dot(r, z))
        d = -z + (rz_new / rz) * d
        rz = rz_new
    return SteihaugResult(p, maxiter, "maxiter", rnorm, target, curvature)

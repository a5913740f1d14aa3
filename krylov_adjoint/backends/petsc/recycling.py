"""The PETSc backend's recycling: each solve starts from the best combination of its last
k solutions, for the current operator.

Before a solve, the last k solutions of this KSP and the warm start, ``X = [x₁ … x_k, x₀]``,
are multiplied by the *current* A (k + 1 operator products, and two more for the residuals
of the given and the projected start, which the report needs), ``A X``
enters the small normal equations ``(AX)ᵀ(AX) y = (AX)ᵀ b`` (k² + k inner products in
one ``VecMDot`` per column), solved by an eigendecomposition that drops the directions
below 1e-14 of the largest eigenvalue (successive solutions are often nearly parallel), and
the start is ``x₀ = X y``, the minimal-residual combination. The warm start is one of the
columns, and a start whose residual comes out larger (rounding) is not taken. For CG
(A symmetric positive definite) the start is the Galerkin one instead,
``(Xᵀ A X) y = Xᵀ b``, which minimises the A-norm of the error, the norm CG reduces: the
minimal-residual start, measured on the 64² diffusion problem with GAMG, *raised* the
primal iterations over 10 gradients from 92 to 101. All of it is PETSc Vec and Mat
operations (``MatMult``, ``VecMDot``, ``VecMAXPY``): collective, distributed, any KSP type,
any preconditioner; the Krylov method itself stays PETSc's.

Why not PETSc's ``KSPGUESSPOD`` (or ``fischer``), the facility made for this: it keeps
``A xᵢ`` from the time of each solve and resets itself when the operator changes; along a
path of θ the operator changes at every solve, so it never forms a guess, and then it
*discards* the warm start (PETSc's KSPSolve starts from zero when the guess object leaves
the vector unchanged). Measured on the distributed 64² diffusion problem with GAMG over
8 gradients: the primal iterations per solve go from 9 (warm start) to 11 (zero start).
``PCDEFLATION`` deflates a fixed space whose coarse problem ``WᵀAW`` is formed at the
preconditioner's set-up, which the engine keeps across θ; petsc4py gives no access to the
Ritz vectors of a solve to renew W.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ProjectedStart"]

#: Eigenvalues of the normal equations below this share of the largest are dropped.
_RANK_TOLERANCE = 1e-14


class ProjectedStart:
    """The last ``k`` solutions of one KSP and the projected start made from them.

    Parameters
    ----------
    k : int
        How many solutions to keep (>= 1).
    """

    def __init__(self, k: int) -> None:
        self.k = int(k)
        self.solutions: list[Any] = []
        #: Mean residual reduction per iteration of the last solve that iterated.
        self.rate: float | None = None

    @property
    def dim(self) -> int:
        """The number of solutions held."""
        return len(self.solutions)

    def start(self, A: Any, b: Any, x: Any, *, transpose: bool, warm: bool,  # noqa: N803
              galerkin: bool = False) -> tuple[int, float, float]:
        """Overwrite ``x`` by the minimal-residual combination of the kept solutions (and of
        ``x`` itself when ``warm``), or with ``galerkin`` (for CG, A symmetric positive
        definite) the combination of least A-norm error, ``Xᵀ A X y = Xᵀ b``; return the
        number of directions used and the residual norms of the given start and of the
        projected one (collective)."""
        product = A.multTranspose if transpose else A.mult
        before = _residual_norm(product, b, x) if warm else float(b.norm())
        columns = list(self.solutions)
        if warm:
            columns.append(x)
        if not columns:
            return 0, before, before
        images = []
        for v in columns:
            w = v.duplicate()
            product(v, w)
            images.append(w)
        tests = columns if galerkin else images
        gram = np.array([w.mDot(tests) for w in images], dtype=float)
        rhs = np.array(b.mDot(tests), dtype=float)
        for w in images:
            w.destroy()
        values, vectors = np.linalg.eigh(0.5 * (gram + gram.T))
        if not (np.isfinite(values).all() and values[-1] > 0):
            return 0, before, before
        keep = values > _RANK_TOLERANCE * values[-1]
        y = vectors[:, keep] @ ((vectors[:, keep].T @ rhs) / values[keep])
        start = x.duplicate()
        start.set(0.0)
        start.maxpy(y, columns)
        after = _residual_norm(product, b, start)
        if after < before or galerkin:  # CG's start: the A-norm decides, not the residual
            start.copy(x)
        else:
            after = before
        start.destroy()
        return int(keep.sum()), before, after

    def remember(self, x: Any) -> None:
        """Keep a copy of the solution ``x`` (unless it is not finite: a failed solve),
        dropping the oldest beyond k (collective)."""
        if not np.isfinite(x.norm()):
            return
        self.solutions.append(x.copy())
        if len(self.solutions) > self.k:
            self.solutions.pop(0).destroy()

    def destroy(self) -> None:
        """Free the kept vectors."""
        for v in self.solutions:
            v.destroy()
        self.solutions = []


def _residual_norm(product: Any, b: Any, x: Any) -> float:
    """‖b − A x‖ with ``product(x, out)`` (collective)."""
    r = b.duplicate()
    product(x, r)
    r.aypx(-1.0, b)
    norm = float(r.norm())
    r.destroy()
    return norm

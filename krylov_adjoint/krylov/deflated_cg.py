"""Deflated preconditioned conjugate gradients with a recycled space (SPD A and M).

The algorithm of Saad, Yeung, Erhel and Guyomarc'h, "A deflated version of the conjugate
gradient algorithm" (SIAM J. Sci. Comput. 21, 2000), Algorithm 3.6, with the deflation
space ``W = U`` of a :class:`~.recycling.RecycledSpace` (``A U = C`` held, so no operator
product is spent on it) and ``E = U A Uᵀ``:

- the start is the Galerkin projection ``x₀ += U E⁻¹ U r``, so ``U r₀ = 0``;
- every search direction is made A-conjugate to U: ``p = z + β p − Uᵀ E⁻¹ C z``.

In exact arithmetic the residuals stay orthogonal to U and the iteration is that of PCG on
the operator with the directions of U removed: the small eigenvalues of M A that U
approximates no longer slow it. Per iteration it costs one product with C and one with U
(2k inner products and k vector updates) on top of PCG.

The next space is chosen by Rayleigh–Ritz on ``span(U, p₀, p₁, …)`` for the pencil
``A u = λ M⁻¹ u``, whose small eigenvalues are those of M A: with ``Z`` those directions,
``ZᵀAZ y = λ ZᵀM⁻¹Z y``, compressed to k Ritz vectors every k iterations (see
:class:`_Harvest`). ``A p`` is the product the iteration makes anyway and ``M⁻¹ p`` follows
from ``M⁻¹ z = r`` by the recurrence of p (one vector update per iteration); ``M⁻¹ U`` is
the space's ``Ũ``. The k smallest Ritz pairs at the end become the next space.

Measured on 8 slowly drifting 1-D diffusion systems (N = 300, Jacobi, k = 10,
``tests/test_recycling.py``): Ritz pairs from only the first k directions of each solve
(Saad et al.'s choice) saved 7 % of the iterations; the windowed compression over the
whole solve saves the share the test asserts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import cho_solve, eigh

from .._checks import readonly
from ._norm import norm
from ._run import KrylovRun
from .recycling import RecycledSpace
from .result import ConvergenceReason, SolveResult

__all__ = ["deflated_cg"]

Apply = Callable[[np.ndarray], np.ndarray]


def deflated_cg(matvec: Apply, b: np.ndarray, x: np.ndarray, r: np.ndarray, run: KrylovRun,
                *, precond: Apply, maxiter: int, space: RecycledSpace) -> SolveResult:
    """Deflated PCG from the Galerkin-projected ``x`` (``U r = 0``); stops as
    :func:`~.cg.cg` does (recurrence residual, confirmed explicitly) and leaves the next
    recycled space in ``space``.

    A non-positive curvature pᵀAp reports ``DIVERGED_INDEFINITE_MATRIX``; a non-positive
    rᵀMr reports ``DIVERGED_INDEFINITE_PC``.
    """
    factor = space.galerkin_factor()
    U, U_tilde, C = space.U, space.U_tilde, space.C

    def deflated(z: np.ndarray, z_tilde: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Π z = z − Uᵀ E⁻¹ C z`` (:meth:`~.recycling.RecycledSpace.galerkin_projector`)
        and the same combination of ``z_tilde`` with Ũ, which keeps ``M⁻¹ p``."""
        if factor is None:
            return z.copy(), z_tilde.copy()
        mu = cho_solve(factor, C @ z)
        return z - U.T @ mu, z_tilde - U_tilde.T @ mu

    harvest = _Harvest(space, b.size)
    r_in = readonly(r)
    z = precond(r_in)
    rho = float(r @ z)
    run.check_finite(rho, preconditioned=z)
    p, p_tilde = deflated(z, r)
    while True:
        p_in = readonly(p)
        if rho <= 0.0:
            return _finish(run, harvest, x,
                           ConvergenceReason.DIVERGED_INDEFINITE_PC,
                           f"CG breakdown: rᵀMr = {rho:.3e} <= 0, the preconditioner is not "
                           "positive definite")
        q = matvec(p_in)
        curvature = float(p @ q)
        run.check_finite(curvature, product=q)
        if curvature <= 0.0:
            return _finish(run, harvest, x,
                           ConvergenceReason.DIVERGED_INDEFINITE_MATRIX,
                           f"CG breakdown: pᵀAp = {curvature:.3e} <= 0, the operator is not "
                           "positive definite")
        harvest.push(p, q, p_tilde)
        alpha = rho / curvature
        x += alpha * p
        r -= alpha * q
        rnorm = norm(r)
        run.iterations += 1
        run.record(rnorm)
        restart = False
        if rnorm <= run.target:
            r = b - matvec(x)
            rnorm = norm(r)
            run.replace_last(rnorm)
            if rnorm <= run.target:
                return _finish(run, harvest, x,
                               run.converged_reason)
            if run.stagnated(rnorm):
                return _finish(run, harvest, x, None)
            restart = True  # the recurrence drifted: restart from the true residual
            space.project_galerkin(x, r)
            r_in = readonly(r)
        if run.iterations >= maxiter:
            return _finish(run, harvest, x,
                           ConvergenceReason.DIVERGED_MAXITER)
        z = precond(r_in)
        rho_next = float(r @ z)
        run.check_finite(rho_next, preconditioned=z)
        beta = 0.0 if restart else rho_next / rho
        p, p_tilde = deflated(z + beta * p, r + beta * p_tilde)
        rho = rho_next


def _finish(run: KrylovRun, harvest: _Harvest, x: np.ndarray,
            reason: ConvergenceReason | None, message: str = "") -> SolveResult:
    """Renew the space, then the result (``reason`` None: stagnation)."""
    harvest.store()
    if reason is None:
        return run.stagnation(x)
    return run.finish(x, reason, message)


class _Harvest:
    """The candidate space of the renewal, compressed as the solve goes.

    It starts as the recycled space (rows ``Z``, ``A Z`` and ``M⁻¹ Z``); every ``k`` search
    directions, ``span(Z, p…)`` is compressed to its k smallest Ritz pairs of
    ``A u = λ M⁻¹ u`` (Rayleigh–Ritz, as eigCG does with its window: Stathopoulos and
    Orginos, SIAM J. Sci. Comput. 32, 2010), so that the directions of the whole solve are
    seen in 3 × 2k vectors of memory, allocated once per solve. Cost per window of k
    iterations: two ``2k × 2k`` Gram products and three ``k × 2k`` combinations (BLAS 3),
    about 14k vector operations per iteration.
    """

    def __init__(self, space: RecycledSpace, n: int) -> None:
        self.space, self.k = space, space.k
        d = space.dim
        rows = max(d, self.k) + self.k
        self.Z, self.AZ, self.Z_tilde = (np.empty((rows, n)) for _ in range(3))
        self.Z[:d], self.AZ[:d], self.Z_tilde[:d] = space.U, space.C, space.U_tilde
        self.base = self.filled = d  # rows of the compressed space; rows filled
        self.changed = False

    def push(self, p: np.ndarray, Ap: np.ndarray, p_tilde: np.ndarray) -> None:  # noqa: N803
        """Add a search direction, its image and its preimage; compress a full window."""
        i = self.filled
        self.Z[i], self.AZ[i], self.Z_tilde[i] = p, Ap, p_tilde
        self.filled += 1
        if self.filled - self.base == self.k:
            self.compress()

    def compress(self) -> None:
        """Replace the rows filled by the k smallest Ritz vectors of their span."""
        m = self.filled
        if m == self.base:
            return
        Y = _ritz(self.Z[:m], self.AZ[:m], self.Z_tilde[:m], self.k)
        if Y is None:  # a non-finite small problem: forget this window
            self.filled = self.base
            return
        r = Y.shape[0]
        for rows in (self.Z, self.AZ, self.Z_tilde):
            rows[:r] = Y @ rows[:m]
        self.base = self.filled = r
        self.changed = True

    def store(self) -> None:
        """Compress the last window and make the result the recycled space."""
        self.compress()
        if self.changed:
            r = self.base
            self.space.replace(self.Z[:r], self.Z_tilde[:r], self.AZ[:r])


def _ritz(Z: np.ndarray, AZ: np.ndarray, Z_tilde: np.ndarray, k: int) -> np.ndarray | None:
    """Coefficients (rows) of the k smallest Ritz pairs of ``A u = λ M⁻¹ u`` on
    ``span(Z)``: ``ZᵀAZ y = λ ZᵀM⁻¹Z y``; None when the small problem is not finite."""
    F = Z @ AZ.T
    G = Z @ Z_tilde.T
    F, G = 0.5 * (F + F.T), 0.5 * (G + G.T)
    if not (np.isfinite(F).all() and np.isfinite(G).all()):
        return None
    try:
        values, vectors = eigh(F, G)
    except np.linalg.LinAlgError:  # Ũ from an earlier preconditioner: ZᵀM⁻¹Z not definite
        try:
            values, vectors = eigh(F, Z @ Z.T)
        except np.linalg.LinAlgError:
            return None
    order = np.argsort(values)[:k]
    return vectors[:, order].T

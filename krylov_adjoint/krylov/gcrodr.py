"""GCRO-DR: restarted GMRES with a recycled space, right-preconditioned.

Parks, de Sturler, Mackey, Johnson and Maiti, "Recycling Krylov subspaces for sequences of
linear systems" (SIAM J. Sci. Comput. 28, 2006), here in its right-preconditioned form
with the recycled directions U in the solution space (as in the flexible variant of
Carvalho, Giraud and Le Tallec, 2011), so that ``C = A U`` needs A only, never M.

Each cycle, from the residual r (orthogonal to C after the projection
``x += U (C r)``, ``r −= Cᵀ(C r)``), runs m Arnoldi steps on ``(I − CᵀC) A M``:
``A Z_j = Cᵀ B_j + V_{j+1} H̄_j`` with ``Z_j = M V_j``. The correction
``x += Z y − Uᵀ B y``, ``y = argmin ‖β e₁ − H̄ y‖``, minimises the residual over
``range(U) + range(Z)``, so the residual estimate is GMRES's (Givens rotations) and
the cycle stops on it; every cycle ends with an explicit true residual, which decides.

After each cycle the space is renewed from ``[U; Z_j]`` by harmonic Ritz vectors of A M on
``[Ũ; V_j]`` (Parks et al., eq. 2.13): with ``Ŵ = [Ũ; V_j]``, ``V̂ = [C; V_{j+1}]`` and
``A M Ŵᵀ = V̂ᵀ G``, ``G = [[I, B], [0, H̄]]``, solve ``GᵀG y = θ Gᵀ(V̂ Ŵᵀ) y`` and keep
the k values of smallest modulus (a complex pair as its real and imaginary parts). Then
``U ← [U; Z_j]ᵀ P``, ``Ũ ← ŴᵀP``, ``A U = V̂ᵀ G P``: no operator product is spent.

Memory: GMRES(m)'s, plus 3k vectors (U, Ũ, C) and the ``(m + k)`` vectors of the renewal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import eig

from ._basis import Rows
from ._norm import norm
from ._run import KrylovRun
from .gmres import _REORTHOGONALISE
from .recycling import RecycledSpace
from .result import ConvergenceReason, SolveResult

__all__ = ["gcrodr"]

Apply = Callable[[np.ndarray], np.ndarray]


def gcrodr(matvec: Apply, b: np.ndarray, x: np.ndarray, r: np.ndarray, run: KrylovRun, *,
           precond: Apply, maxiter: int, restart: int, space: RecycledSpace) -> SolveResult:
    """GCRO-DR(m, k) from ``x`` (modified in place) with residual ``r = b − A x`` already
    projected on the space (``C r = 0``); leaves the next space in ``space``."""
    n = b.size
    m = max(1, min(restart, maxiter, n))
    run.stall_window = m
    V = Rows(m + 1, n)
    Z = Rows(m, n)
    rnorm = norm(r)
    while True:
        C = space.C
        d = space.dim
        H = np.zeros((m + 1, m))  # rotated to triangular
        H_bar = np.zeros((m + 1, m))  # as built, for the harvest
        B = np.zeros((d, m))
        cs, sn = np.zeros(m), np.zeros(m)
        g = np.zeros(m + 1)
        g[0] = rnorm
        np.divide(r, rnorm, out=V.slot(0))
        k = 0
        happy = estimate_converged = False
        for j in range(m):
            z = precond(V.row(j))
            np.copyto(Z.slot(j), z)
            w = matvec(z)
            w_norm0 = norm(w)
            run.check_finite(w_norm0, preconditioned=z, product=w)
            if d:
                B[:, j] = C @ w
                w = w - C.T @ B[:, j]
            h = V.dot(j + 1, w)
            w = V.subtract_combination(j + 1, h, w)
            h_next = norm(w)
            if h_next < _REORTHOGONALISE * w_norm0:
                if d:
                    again = C @ w
                    w -= C.T @ again
                    B[:, j] += again
                h2 = V.dot(j + 1, w)
                V.subtract_combination(j + 1, h2, w, in_place=True)
                h += h2
                h_next = norm(w)
            H_bar[: j + 1, j] = h
            H_bar[j + 1, j] = h_next
            # the next basis vector is stored before any stop: the renewal reads V_{j+1}
            if h_next > 1e-14 * w_norm0:
                np.divide(w, h_next, out=V.slot(j + 1))
            else:
                V.slot(j + 1).fill(0.0)
            col = H[:, j]
            col[:] = H_bar[:, j]
            for i in range(j):
                t = cs[i] * col[i] + sn[i] * col[i + 1]
                col[i + 1] = -sn[i] * col[i] + cs[i] * col[i + 1]
                col[i] = t
            denom = float(np.hypot(col[j], col[j + 1]))
            if denom == 0.0:
                happy = True
                break
            cs[j], sn[j] = col[j] / denom, col[j + 1] / denom
            col[j], col[j + 1] = denom, 0.0
            g[j + 1] = -sn[j] * g[j]
            g[j] = cs[j] * g[j]
            k = j + 1
            run.iterations += 1
            estimate = abs(g[j + 1])
            run.record(estimate)
            if h_next <= 1e-14 * w_norm0:
                happy = True
                break
            if estimate <= run.target or run.iterations >= maxiter:
                estimate_converged = estimate <= run.target
                break
        if k > 0:
            y = np.linalg.solve(np.triu(H[:k, :k]), g[:k])
            Z.add_combination(k, y, x)
            if d:
                x -= space.U.T @ (B[:, :k] @ y)
        r = b - matvec(x)
        rnorm = norm(r)
        run.check_finite(rnorm, product=r)
        run.replace_last(rnorm)
        if k > 0:
            _harvest(space, V, Z, H_bar[: k + 1, :k], B[:, :k], k)
        if rnorm <= run.target:
            return run.finish(x, run.converged_reason)
        if estimate_converged and run.stagnated(rnorm):
            return run.stagnation(x)
        if happy:
            return run.finish(x, ConvergenceReason.DIVERGED_BREAKDOWN,
                              "GCRO-DR breakdown: the Krylov space became invariant without "
                              "reaching the target (singular or inconsistent system, or a "
                              "singular preconditioner)", singular_hint=True)
        if run.iterations >= maxiter:
            return run.finish(x, ConvergenceReason.DIVERGED_MAXITER)
        space.project(x, r)
        rnorm = norm(r)


def _rows(rows: Rows, count: int) -> np.ndarray:
    """The first ``count`` rows as one array (a copy)."""
    return np.vstack([block for block, _, _ in rows._spans(count)]) if count else \
        np.zeros((0, rows.n))


def _harvest(space: RecycledSpace, V: Rows, Z: Rows, H_bar: np.ndarray, B: np.ndarray,
             k: int) -> None:
    """The next space: k harmonic Ritz vectors of A M on ``[Ũ; V_k]`` (module docstring).

    After a happy breakdown the last row of ``V`` is zero, as is the last row of H̄."""
    d = space.dim
    G = np.zeros((d + k + 1, d + k))
    G[:d, :d] = np.eye(d)
    G[:d, d:] = B
    G[d:, d:] = H_bar
    V_rows = _rows(V, k + 1)
    VW = np.zeros((d + k + 1, d + k))  # V̂ Ŵᵀ
    if d:
        VW[:d, :d] = space.C @ space.U_tilde.T
        VW[d:, :d] = V_rows @ space.U_tilde.T
    VW[d:d + k, d:] = np.eye(k)
    left = G.T @ G
    right = G.T @ VW
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        return
    try:
        values, vectors = eig(left, right)
    except (np.linalg.LinAlgError, ValueError):
        return
    finite = np.isfinite(values)
    if not finite.any():
        return
    order = [i for i in np.argsort(np.abs(np.where(finite, values, np.inf))) if finite[i]]
    columns: list[np.ndarray] = []
    taken: set[int] = set()
    for i in order:
        if len(columns) >= space.k:
            break
        if i in taken:
            continue
        taken.add(i)
        vector = vectors[:, i]
        if abs(values[i].imag) > 0:
            columns.extend([vector.real, vector.imag])
            pair = np.argmin(np.abs(values - np.conj(values[i])) + np.where(
                np.arange(values.size) == i, np.inf, 0.0))
            taken.add(int(pair))
        else:
            columns.append(vector.real)
    P = np.linalg.qr(np.array(columns[: space.k]).T)[0]  # orthonormal coefficients
    W_rows = np.vstack([space.U, _rows(Z, k)])
    W_tilde = np.vstack([space.U_tilde, V_rows[:k]])
    V_hat = np.vstack([space.C, V_rows])
    GP = G @ P
    # A (P-combination of W) = V̂ᵀ G P: replace() orthonormalises it; its rows are formed
    # from V̂ by the small factor, not by an operator product.
    space.replace(P.T @ W_rows, P.T @ W_tilde, GP.T @ V_hat)

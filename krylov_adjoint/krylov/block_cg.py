"""Block conjugate gradients: S right-hand sides of one SPD system in one Krylov space.

Block CG (O'Leary 1980) searches for the S solutions in the sum of their Krylov spaces, so
each iteration improves every column with the directions of all of them: fewer iterations
than S separate CG solves, and the operator and the preconditioner applied to an (N, r)
block at once. The directions are orthonormalised with a rank-revealing QR at every step
(the breakdown-free block CG of Ji & Li, 2017): when the residuals become linearly
dependent (a column converged, two sources alike) the block shrinks instead of breaking
down. With r directions the recurrence is

    α = (PᵀAP)⁻¹ Pᵀ R,   X ← X + P α,   R ← R − AP α,
    Z = M R,   β = −(PᵀAP)⁻¹ (AP)ᵀ Z,   P ← orth(Z + P β).

Each column stops on its own true residual, ``‖bₛ − A xₛ‖ ≤ max(rtol‖bₛ‖, atol)``, as in
:func:`~krylov_adjoint.krylov.solve`; the block iterates until every column has.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.linalg as sla

from ..errors import NonFiniteError
from .result import ConvergenceReason, SolveResult
from .stopping import Monitor

__all__ = ["block_cg"]

Apply = Callable[[np.ndarray], np.ndarray]

#: Directions whose QR pivot is below this fraction of the largest one are dropped.
_RANK_TOL = 1e-12


def block_cg(matmat: Apply, B: np.ndarray, X0: np.ndarray | None, *, precond: Apply,
             rtol: float, atol: float, maxiter: int, monitor: Monitor | None = None,
             labels: tuple[str, str] = ("A", "M"), phase: str = "solve"
             ) -> list[SolveResult]:
    """Solve ``A X = B`` column by column in one block Krylov space (A and M SPD).

    Parameters
    ----------
    matmat : callable ``(N, k) -> (N, k)``
        ``A @ V`` for a block V (the caller checks the callback's output).
    B : ndarray, shape (N, S)
    X0 : ndarray, shape (N, S), or None
        Initial guesses (not modified); zero when None.
    precond : callable ``(N, k) -> (N, k)``
        ``M @ R``, M symmetric positive definite.
    rtol, atol, maxiter
        As in :func:`~krylov_adjoint.krylov.solve`, for each column.
    monitor : callable ``(phase, iteration, residual_norm)``, optional
        Called for every column at every iteration with ``phase`` ``"<phase>[s]"``.
    labels : (str, str)
        Names of A and M in error messages.
    phase : str

    Returns
    -------
    list of SolveResult
        One per column, with its own residual history and reason; ``iterations`` counts
        the block iterations that column took part in (0 when its initial guess already
        met the tolerance), and ``method`` is ``"block_cg"``.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(40, 40), format="csr")
    >>> B = np.random.default_rng(0).standard_normal((40, 3))
    >>> results = block_cg(lambda V: A @ V, B, None, precond=lambda R: R.copy(),
    ...                    rtol=1e-10, atol=0.0, maxiter=100)
    >>> [r.reason.name for r in results]
    ['CONVERGED_RTOL', 'CONVERGED_RTOL', 'CONVERGED_RTOL']
    >>> bool(np.allclose(A @ np.column_stack([r.x for r in results]), B, atol=1e-8))
    True
    """
    start = time.perf_counter()
    n, s = B.shape
    rhs_norms = np.linalg.norm(B, axis=0)
    targets = np.maximum(rtol * rhs_norms, atol)
    X = np.zeros((n, s)) if X0 is None else np.array(X0, dtype=np.float64, copy=True)
    R = B.copy() if X0 is None else B - matmat(X)
    histories: list[list[float]] = [[] for _ in range(s)]
    iterations = np.zeros(s, dtype=int)
    reasons: list[ConvergenceReason | None] = [None] * s
    messages = [""] * s

    def record(columns: np.ndarray, norms: np.ndarray, iteration: int) -> None:
        for j, value in zip(columns, norms, strict=True):
            histories[j].append(float(value))
            if monitor is not None:
                monitor(f"{phase}[{j}]", iteration, float(value))

    norms = np.linalg.norm(R, axis=0)
    _check_finite(norms, labels[0], "A @ x0", 0)
    record(np.arange(s), norms, 0)
    for j in range(s):
        if not B[:, j].any() and norms[j] == 0.0:
            reasons[j], messages[j] = (ConvergenceReason.CONVERGED_ZERO_RHS,
                                       "zero right-hand side: x = 0, no iteration")
        elif norms[j] <= targets[j]:
            reasons[j] = _converged(rtol, atol, rhs_norms[j])
            messages[j] = "the initial guess already satisfies the tolerance"
    active = np.array([j for j in range(s) if reasons[j] is None], dtype=int)
    if active.size:
        _iterate(matmat, precond, B, X, R, active, targets, maxiter, labels, record,
                 iterations, reasons, messages, rtol, atol, rhs_norms, histories)
    seconds = time.perf_counter() - start
    out = []
    for j in range(s):
        reason = reasons[j]
        assert reason is not None
        out.append(SolveResult(
            x=np.ascontiguousarray(X[:, j]), reason=reason, iterations=int(iterations[j]),
            residual_norms=np.asarray(histories[j]), target=float(targets[j]),
            rhs_norm=float(rhs_norms[j]), seconds=seconds, method="block_cg",
            message=messages[j] or reason.name.lower().replace("_", " "),
            extra={"block_size": int(s)}))
    return out


def _iterate(matmat: Apply, precond: Apply, B: np.ndarray, X: np.ndarray, R: np.ndarray,
             active: np.ndarray, targets: np.ndarray, maxiter: int, labels: tuple[str, str],
             record: Callable[[np.ndarray, np.ndarray, int], None], iterations: np.ndarray,
             reasons: list, messages: list, rtol: float, atol: float, rhs_norms: np.ndarray,
             histories: list[list[float]]) -> None:
    """The block recurrence on the columns ``active`` of X and R (updated in place)."""
    Ba, Xa, Ra, goal = B[:, active], X[:, active], R[:, active], targets[active]
    iteration, false_convergence = 0, None
    P = _directions(precond(Ra), labels[1], iteration)

    def stop(reason: ConvergenceReason, message: str, columns: np.ndarray) -> None:
        for k in columns:
            j = active[k]
            reasons[j], messages[j] = reason, message
            iterations[j] = iteration

    while True:
        Q = matmat(P)
        PtQ = P.T @ Q
        _check_finite(np.diag(PtQ), labels[0], "A @ p", iteration)
        try:
            factor = sla.cho_factor(0.5 * (PtQ + PtQ.T))
        except np.linalg.LinAlgError:
            stop(ConvergenceReason.DIVERGED_INDEFINITE_MATRIX,
                 "block CG breakdown: PᵀAP is not positive definite, the operator is not "
                 "positive definite", np.arange(active.size))
            break
        alpha = sla.cho_solve(factor, P.T @ Ra)
        Xa += P @ alpha
        Ra -= Q @ alpha
        iteration += 1
        norms = np.linalg.norm(Ra, axis=0)
        record(active, norms, iteration)
        restart = False
        if (norms <= goal).all():
            Ra = Ba - matmat(Xa)
            norms = np.linalg.norm(Ra, axis=0)
            for k, j in enumerate(active):
                histories[j][-1] = float(norms[k])
            if (norms <= goal).all():
                for j in active:
                    reasons[j] = _converged(rtol, atol, rhs_norms[j])
                    iterations[j] = iteration
                break
            worst = float(np.max(norms / goal))
            if false_convergence is not None and worst >= 0.5 * false_convergence:
                above = np.flatnonzero(norms > goal)
                stop(ConvergenceReason.DIVERGED_STAGNATION,
                     "the true residual stagnates above the target: the tolerance is below "
                     "the attainable accuracy; loosen rtol or atol", above)
                for k in np.flatnonzero(norms <= goal):
                    reasons[active[k]] = _converged(rtol, atol, rhs_norms[active[k]])
                    iterations[active[k]] = iteration
                break
            false_convergence, restart = worst, True
        if iteration >= maxiter:
            Ra = Ba - matmat(Xa)
            norms = np.linalg.norm(Ra, axis=0)
            for k, j in enumerate(active):
                histories[j][-1] = float(norms[k])
                if norms[k] <= goal[k]:
                    reasons[j] = _converged(rtol, atol, rhs_norms[j])
                else:
                    reasons[j] = ConvergenceReason.DIVERGED_MAXITER
                    messages[j] = "maximum number of iterations reached"
                iterations[j] = iteration
            break
        Z = precond(Ra)
        if restart:
            P = _directions(Z, labels[1], iteration)
        else:
            beta = -sla.cho_solve(factor, Q.T @ Z)
            P = _directions(Z + P @ beta, labels[1], iteration)
        if P.shape[1] == 0:  # every residual is zero in floating point
            Ra = Ba - matmat(Xa)
            P = _directions(precond(Ra), labels[1], iteration)
            if P.shape[1] == 0:
                for j in active:
                    reasons[j] = _converged(rtol, atol, rhs_norms[j])
                    iterations[j] = iteration
                break
    X[:, active] = Xa


def _directions(W: np.ndarray, label: str, iteration: int) -> np.ndarray:
    """An orthonormal basis of the numerical range of W (rank-revealing QR)."""
    if not np.isfinite(W).all():
        raise NonFiniteError(label, f"returned NaN or Inf at block CG iteration {iteration}")
    if not W.any():
        return W[:, :0]
    Q, Rr, _ = sla.qr(W, mode="economic", pivoting=True)
    pivots = np.abs(np.diag(Rr))
    rank = int(np.count_nonzero(pivots > _RANK_TOL * pivots[0]))
    return Q[:, :rank]


def _check_finite(values: np.ndarray, label: str, product: str, iteration: int) -> None:
    if not np.isfinite(values).all():
        raise NonFiniteError(label, f"returned NaN or Inf ({product}) at block CG iteration "
                                    f"{iteration}")


def _converged(rtol: float, atol: float, rhs_norm: float) -> ConvergenceReason:
    return (ConvergenceReason.CONVERGED_RTOL if rtol * rhs_norm >= atol
            else ConvergenceReason.CONVERGED_ATOL)

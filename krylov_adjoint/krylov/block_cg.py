"""CG for S right-hand sides of one SPD system at once: in lockstep, or in one block space.

Both apply the operator and the preconditioner to an (N, k) block per iteration (one sparse
product reads the matrix once for k vectors), and both stop each column on its own true
residual, ``‖bₛ − A xₛ‖ ≤ max(rtol‖bₛ‖, atol)``, as :func:`~krylov_adjoint.krylov.solve`.

* :func:`batched_cg` runs S independent CG recurrences side by side (scalars per column):
  each column takes the iterates its own CG solve would, and leaves the block when it has
  converged. Vector work O(N S) per iteration, as S solves.
* :func:`block_cg` is block CG (O'Leary 1980): the S solutions are sought in the sum of their
  Krylov spaces, so each iteration improves every column with the directions of all of them,
  in fewer iterations when a single solve needs many. The directions are orthonormalised
  with a rank-revealing QR each step (the breakdown-free block CG of Ji & Li, 2017): when the
  residuals become linearly dependent (a converged column, two sources alike) the block
  shrinks instead of breaking down. With r directions::

      α = (PᵀAP)⁻¹ Pᵀ R,   X ← X + P α,   R ← R − AP α,
      Z = M R,   β = −(PᵀAP)⁻¹ (AP)ᵀ Z,   P ← orth(Z + P β).

  Dense work O(N S²) per iteration: it pays when it saves iterations (a weak
  preconditioner), not when AMG already converges in a handful.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.linalg as sla

from ..errors import NonFiniteError
from .result import ConvergenceReason, SolveResult
from .stopping import Monitor

__all__ = ["batched_cg", "block_cg"]

Apply = Callable[[np.ndarray], np.ndarray]

#: Directions whose QR pivot is below this fraction of the largest one are dropped.
_RANK_TOL = 1e-12


class _Columns:
    """The per-column book-keeping of a block solve: histories, reasons, the results."""

    def __init__(self, method: str, B: np.ndarray, X0: np.ndarray | None, matmat: Apply,
                 rtol: float, atol: float, monitor: Monitor | None, labels: tuple[str, str],
                 phase: str) -> None:
        self.start = time.perf_counter()
        self.method, self.labels, self.phase, self.monitor = method, labels, phase, monitor
        self.rtol, self.atol = rtol, atol
        n, s = B.shape
        self.rhs_norms = np.linalg.norm(B, axis=0)
        self.targets = np.maximum(rtol * self.rhs_norms, atol)
        self.X = np.zeros((n, s)) if X0 is None else np.array(X0, dtype=np.float64, copy=True)
        self.R = B.copy() if X0 is None else B - matmat(self.X)
        self.histories: list[list[float]] = [[] for _ in range(s)]
        self.iterations = np.zeros(s, dtype=int)
        self.reasons: list[ConvergenceReason | None] = [None] * s
        self.messages = [""] * s
        norms = np.linalg.norm(self.R, axis=0)
        check_finite(norms, labels[0], "A @ x0", 0, method)
        self.record(np.arange(s), norms, 0)
        for j in range(s):
            if not B[:, j].any() and norms[j] == 0.0:
                self.stop(j, ConvergenceReason.CONVERGED_ZERO_RHS, 0,
                          "zero right-hand side: x = 0, no iteration")
            elif norms[j] <= self.targets[j]:
                self.converged(j, 0, "the initial guess already satisfies the tolerance")
        self.active = np.array([j for j in range(s) if self.reasons[j] is None], dtype=int)

    def record(self, columns: np.ndarray, norms: np.ndarray, iteration: int) -> None:
        for j, value in zip(columns, norms, strict=True):
            self.histories[j].append(float(value))
            if self.monitor is not None:
                self.monitor(f"{self.phase}[{j}]", iteration, float(value))

    def replace_last(self, columns: np.ndarray, norms: np.ndarray) -> None:
        for j, value in zip(columns, norms, strict=True):
            self.histories[j][-1] = float(value)

    def stop(self, j: int, reason: ConvergenceReason, iteration: int, message: str = ""
             ) -> None:
        self.reasons[j], self.iterations[j] = reason, iteration
        self.messages[j] = message or reason.name.lower().replace("_", " ")

    def converged(self, j: int, iteration: int, message: str = "") -> None:
        reason = (ConvergenceReason.CONVERGED_RTOL if self.rtol * self.rhs_norms[j] >= self.atol
                  else ConvergenceReason.CONVERGED_ATOL)
        self.stop(j, reason, iteration, message)

    def results(self, size: int) -> list[SolveResult]:
        seconds = time.perf_counter() - self.start
        out = []
        for j, reason in enumerate(self.reasons):
            assert reason is not None
            out.append(SolveResult(
                x=np.ascontiguousarray(self.X[:, j]), reason=reason,
                iterations=int(self.iterations[j]),
                residual_norms=np.asarray(self.histories[j]), target=float(self.targets[j]),
                rhs_norm=float(self.rhs_norms[j]), seconds=seconds, method=self.method,
                message=self.messages[j], extra={"block_size": size}))
        return out


def batched_cg(matmat: Apply, B: np.ndarray, X0: np.ndarray | None, *, precond: Apply,
               rtol: float, atol: float, maxiter: int, monitor: Monitor | None = None,
               labels: tuple[str, str] = ("A", "M"), phase: str = "solve"
               ) -> list[SolveResult]:
    """Solve ``A X = B`` by S preconditioned CG recurrences in lockstep (A and M SPD).

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
        One per column, with its own iterations, residual history and reason (``method``
        ``"batched_cg"``); a non-positive curvature or rᵀMr stops the whole block with
        ``DIVERGED_INDEFINITE_MATRIX`` or ``DIVERGED_INDEFINITE_PC`` for its columns.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(40, 40), format="csr")
    >>> B = np.random.default_rng(0).standard_normal((40, 3))
    >>> results = batched_cg(lambda V: A @ V, B, None, precond=lambda R: R.copy(),
    ...                      rtol=1e-10, atol=0.0, maxiter=100)
    >>> [r.reason.name for r in results]
    ['CONVERGED_RTOL', 'CONVERGED_RTOL', 'CONVERGED_RTOL']
    >>> bool(np.allclose(A @ np.column_stack([r.x for r in results]), B, atol=1e-8))
    True
    """
    book = _Columns("batched_cg", B, X0, matmat, rtol, atol, monitor, labels, phase)
    act = book.active
    if act.size:
        _lockstep(matmat, precond, B, book, act, maxiter)
    return book.results(B.shape[1])


def _lockstep(matmat: Apply, precond: Apply, B: np.ndarray, book: _Columns, act: np.ndarray,
              maxiter: int) -> None:
    """The CG recurrences of the columns ``act``; converged columns leave the block."""
    X, R = book.X[:, act], book.R[:, act]
    labels, iteration = book.labels, 0
    false_convergence = np.full(act.size, np.inf)
    Z = precond(R)
    rho = np.einsum("ij,ij->j", R, Z)
    check_finite(rho, labels[1], "M @ r", 0, "batched CG")
    P = Z.copy()
    work = np.empty_like(P)  # the products with α, in place: no (N, k) temporaries
    while act.size:
        if (rho <= 0.0).any():
            for k in np.flatnonzero(rho <= 0.0):
                book.stop(act[k], ConvergenceReason.DIVERGED_INDEFINITE_PC, iteration,
                          f"CG breakdown: rᵀMr = {rho[k]:.3e} <= 0, the preconditioner is "
                          "not positive definite")
            break
        Q = matmat(P)
        curvature = np.einsum("ij,ij->j", P, Q)
        check_finite(curvature, labels[0], "A @ p", iteration, "batched CG")
        if (curvature <= 0.0).any():
            for k in np.flatnonzero(curvature <= 0.0):
                book.stop(act[k], ConvergenceReason.DIVERGED_INDEFINITE_MATRIX, iteration,
                          f"CG breakdown: pᵀAp = {curvature[k]:.3e} <= 0, the operator is "
                          "not positive definite")
            keep = curvature > 0.0
            book.X[:, act] = X
            act, X, R, P, Q = act[keep], X[:, keep], R[:, keep], P[:, keep], Q[:, keep]
            rho, curvature, work = rho[keep], curvature[keep], work[:, keep]
            false_convergence = false_convergence[keep]
            if not act.size:
                break
        alpha = rho / curvature
        np.multiply(P, alpha, out=work)
        X += work
        np.multiply(Q, alpha, out=work)
        R -= work
        iteration += 1
        norms = np.sqrt(np.einsum("ij,ij->j", R, R))
        book.record(act, norms, iteration)
        done = np.zeros(act.size, dtype=bool)
        restart = np.zeros(act.size, dtype=bool)
        claimed = np.flatnonzero(norms <= book.targets[act])
        if claimed.size:  # confirm on the true residual, as a single CG solve does
            true = B[:, act[claimed]] - matmat(X[:, claimed])
            true_norms = np.linalg.norm(true, axis=0)
            book.replace_last(act[claimed], true_norms)
            for m, k in enumerate(claimed):
                j = act[k]
                if true_norms[m] <= book.targets[j]:
                    book.converged(j, iteration)
                    done[k] = True
                elif true_norms[m] >= 0.5 * false_convergence[k]:
                    book.stop(j, ConvergenceReason.DIVERGED_STAGNATION, iteration,
                              f"the true residual stagnates at {true_norms[m]:.3e} above the "
                              f"target {book.targets[j]:.3e}: the tolerance is below the "
                              "attainable accuracy; loosen rtol or atol")
                    done[k] = True
                else:
                    false_convergence[k] = true_norms[m]
                    R[:, k] = true[:, m]
                    restart[k] = True
        if iteration >= maxiter:
            for k in np.flatnonzero(~done):
                book.stop(act[k], ConvergenceReason.DIVERGED_MAXITER, iteration,
                          "maximum number of iterations reached")
            done[:] = True
        if done.any():
            book.X[:, act] = X
            keep = ~done
            act, X, R, P = act[keep], X[:, keep], R[:, keep], P[:, keep]
            rho, restart, work = rho[keep], restart[keep], work[:, keep]
            false_convergence = false_convergence[keep]
            if not act.size:
                break
        Z = precond(R)
        rho_next = np.einsum("ij,ij->j", R, Z)
        check_finite(rho_next, labels[1], "M @ r", iteration, "batched CG")
        beta = np.where(restart, 0.0, rho_next / rho)
        P *= beta
        P += Z
        rho = rho_next
    if act.size:
        book.X[:, act] = X


def block_cg(matmat: Apply, B: np.ndarray, X0: np.ndarray | None, *, precond: Apply,
             rtol: float, atol: float, maxiter: int, monitor: Monitor | None = None,
             labels: tuple[str, str] = ("A", "M"), phase: str = "solve"
             ) -> list[SolveResult]:
    """Solve ``A X = B`` column by column in one block Krylov space (A and M SPD).

    The parameters and the results are those of :func:`batched_cg`; ``iterations`` counts
    the block iterations a column took part in, and ``method`` is ``"block_cg"``.

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
    """
    book = _Columns("block_cg", B, X0, matmat, rtol, atol, monitor, labels, phase)
    if book.active.size:
        _block_space(matmat, precond, B, book, maxiter)
    return book.results(B.shape[1])


def _block_space(matmat: Apply, precond: Apply, B: np.ndarray, book: _Columns,
                 maxiter: int) -> None:
    """The block recurrence on the columns still iterating (X updated in place)."""
    active, labels = book.active, book.labels
    Ba, Xa, Ra, goal = B[:, active], book.X[:, active], book.R[:, active], book.targets[active]
    iteration, false_convergence = 0, None
    P = _directions(precond(Ra), labels[1], iteration)
    while True:
        Q = matmat(P)
        PtQ = P.T @ Q
        check_finite(np.diag(PtQ), labels[0], "A @ p", iteration, "block CG")
        try:
            factor = sla.cho_factor(0.5 * (PtQ + PtQ.T))
        except np.linalg.LinAlgError:
            for j in active:
                book.stop(j, ConvergenceReason.DIVERGED_INDEFINITE_MATRIX, iteration,
                          "block CG breakdown: PᵀAP is not positive definite, the operator "
                          "is not positive definite")
            break
        alpha = sla.cho_solve(factor, P.T @ Ra)
        Xa += P @ alpha
        Ra -= Q @ alpha
        iteration += 1
        norms = np.linalg.norm(Ra, axis=0)
        book.record(active, norms, iteration)
        restart = False
        if (norms <= goal).all():
            Ra = Ba - matmat(Xa)
            norms = np.linalg.norm(Ra, axis=0)
            book.replace_last(active, norms)
            worst = float(np.max(norms / goal))
            if worst <= 1.0:
                for j in active:
                    book.converged(j, iteration)
                break
            if false_convergence is not None and worst >= 0.5 * false_convergence:
                for k, j in enumerate(active):
                    if norms[k] <= goal[k]:
                        book.converged(j, iteration)
                    else:
                        book.stop(j, ConvergenceReason.DIVERGED_STAGNATION, iteration,
                                  "the true residual stagnates above the target: the "
                                  "tolerance is below the attainable accuracy; loosen rtol "
                                  "or atol")
                break
            false_convergence, restart = worst, True
        if iteration >= maxiter:
            Ra = Ba - matmat(Xa)
            norms = np.linalg.norm(Ra, axis=0)
            book.replace_last(active, norms)
            for k, j in enumerate(active):
                if norms[k] <= goal[k]:
                    book.converged(j, iteration)
                else:
                    book.stop(j, ConvergenceReason.DIVERGED_MAXITER, iteration,
                              "maximum number of iterations reached")
            break
        Z = precond(Ra)
        if restart:
            P = _directions(Z, labels[1], iteration)
        else:
            beta = -sla.cho_solve(factor, Q.T @ Z)
            P = _directions(Z + P @ beta, labels[1], iteration)
        if P.shape[1] == 0:  # no direction left: restart from the true residuals
            P = _directions(precond(Ba - matmat(Xa)), labels[1], iteration)
            if P.shape[1] == 0:
                for j in active:
                    book.stop(j, ConvergenceReason.DIVERGED_BREAKDOWN, iteration,
                              "block CG breakdown: no search direction left")
                break
    book.X[:, active] = Xa


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


def check_finite(values: np.ndarray, label: str, product: str, iteration: int,
                 method: str = "block CG") -> None:
    """Raise :class:`NonFiniteError` naming ``label`` when a scalar of the recurrence is
    NaN or Inf."""
    if not np.isfinite(values).all():
        raise NonFiniteError(label, f"returned NaN or Inf ({product}) at {method} iteration "
                                    f"{iteration}")

"""One PETSc KSP per solve: options prefix, defaults in code, the library's stopping rule.

Each solve (primal, adjoint, tangent) has its own KSP and options prefix, e.g. ``ka_primal_``,
so that ``-ka_primal_ksp_type bcgs`` or ``-ka_adjoint_ksp_monitor`` address one solve. The
unprefixed diagnostics ``-ksp_monitor``, ``-ksp_converged_reason``, ``-ksp_view`` (and
``-ksp_monitor_true_residual``) given on the command line apply to every solve. Defaults are
set in code first; ``setFromOptions()`` comes last, so the command line always wins.

The stopping rule is the serial backend's: ``‖b − A x‖₂ ≤ max(rtol·‖b‖₂, atol)`` on the
unpreconditioned residual (right preconditioning for GMRES/BiCGStab, the unpreconditioned
norm for CG), whatever the initial guess. ``rtol``/``atol``/``max_it`` are read from the KSP
at each solve, so ``-<prefix>ksp_rtol`` from the command line is honoured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ...krylov.result import ConvergenceReason, SolveResult
from ...krylov.stopping import Monitor
from ._import import petsc
from .reasons import describe, describe_petsc_error, from_petsc
from .recycling import ProjectedStart

__all__ = ["KrylovSolve", "petsc_ksp_type", "set_default_options", "set_up_local_blocks",
           "unprefixed_defaults", "INHERITED_OPTIONS"]

#: Serial method names and their PETSc KSP types.
KSP_TYPES = {"gmres": "gmres", "cg": "cg", "bicgstab": "bcgs"}

#: Unprefixed command-line options that every solve inherits (diagnostics only).
INHERITED_OPTIONS = ("ksp_monitor", "ksp_monitor_true_residual", "ksp_converged_reason",
                     "ksp_view")


def petsc_ksp_type(method: str) -> str:
    """PETSc's KSP type for a serial method name (other names pass through).

    Examples
    --------
    >>> petsc_ksp_type("bicgstab"), petsc_ksp_type("fgmres")
    ('bcgs', 'fgmres')
    """
    return KSP_TYPES.get(method, method)


def set_default_options(prefix: str, defaults: dict[str, Any]) -> None:
    """Put ``-<prefix><name> value`` in the options database unless already there.

    This is how defaults reach objects PETSc creates itself (e.g. the smoothers of GAMG):
    the command line (read at initialisation) keeps precedence.
    """
    options = petsc().Options(prefix)
    for name, value in defaults.items():
        if not options.hasName(name):
            options.setValue(name, _option_text(value))


@contextmanager
def unprefixed_defaults(defaults: dict[str, Any]) -> Iterator[None]:
    """Unprefixed options in the database while the block runs, unless already there.

    For options that PETSc reads without the solve's prefix, e.g. ``-matptap_via`` of the
    Galerkin products inside GAMG (their matrices carry no prefix): set around the set-up
    only, so the rest of the process (the user's own solvers) never sees them, and the
    command line keeps precedence.
    """
    options = petsc().Options()
    added = [name for name in defaults if not options.hasName(name)]
    for name in added:
        options.setValue(name, _option_text(defaults[name]))
    try:
        yield
    finally:
        for name in added:
            options.delValue(name)


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def inherit_diagnostics(prefix: str) -> None:
    """Copy the unprefixed ``-ksp_monitor``-like options given by the user to ``prefix``."""
    PETSc = petsc()
    unprefixed, prefixed = PETSc.Options(), PETSc.Options(prefix)
    for name in INHERITED_OPTIONS:
        if unprefixed.hasName(name) and not prefixed.hasName(name):
            prefixed.setValue(name, unprefixed.getString(name, ""))


def set_up_local_blocks(ksp: Any, guard: Any) -> None:
    """Set up the rank-local parts of the preconditioner (block Jacobi's or ASM's
    sub-solvers) now, each rank on its own, and agree on failures.

    Inside ``KSPSolve`` a sub-solver failing on one rank (a zero pivot, a missing
    diagonal entry) raises on that rank only while the others wait in a reduction: the
    job aborts. Done here, the failure becomes the same error on every rank, naming the
    rank; PETSc's own message is printed on that rank's stderr.
    """
    PETSc = petsc()
    PETSc.Sys.pushErrorHandler("traceback")
    try:
        ksp.setUpOnBlocks()
    except PETSc.Error as exc:
        guard.record("the preconditioner set-up", RuntimeError(
            f"{describe_petsc_error(exc)} in the preconditioner's local set-up from the "
            "assembled rows of this rank (operator.assemble); PETSc's message is on "
            "this rank's stderr"))
    finally:
        PETSc.Sys.popErrorHandler()
    guard.checkpoint("the preconditioner set-up")


class KrylovSolve:
    """A configured KSP for one phase (``"primal"``, ``"adjoint"``, ``"tangent"``).

    Parameters
    ----------
    comm : communicator
    prefix : str
        Options prefix, e.g. ``"ka_primal_"``.
    phase : str
        Name passed to the monitor and to results.
    method : str
        ``"gmres"``, ``"cg"``, ``"bicgstab"`` or any PETSc KSP type.
    rtol, atol : float
    maxiter : int
    restart : int
        GMRES restart.
    monitor : callable ``(phase, iteration, residual_norm)``, optional
    recycle : int
        With k > 0, each solve starts from the minimal-residual combination of its last k
        solutions and the warm start, for the current operator
        (:class:`~.recycling.ProjectedStart`: k + 3 operator products at most). Each result's
        ``extra`` then holds ``recycled_dimension`` (the directions used) and
        ``iterations_saved`` (against a cold start, the estimate of
        :mod:`krylov_adjoint.krylov.recycling`).
    """

    def __init__(self, comm: Any, prefix: str, phase: str, *, method: str, rtol: float,
                 atol: float, maxiter: int, restart: int, monitor: Monitor | None,
                 recycle: int = 0) -> None:
        PETSc = petsc()
        self.phase, self.prefix = phase, prefix
        self.recycled = ProjectedStart(recycle) if recycle else None
        self.bnorm = 0.0
        self.r0 = 0.0
        ksp = PETSc.KSP().create(comm=comm)
        ksp.setOptionsPrefix(prefix)
        ksp.setType(petsc_ksp_type(method))
        if ksp.getType() in ("gmres", "fgmres", "lgmres", "dgmres", "pipefgmres"):
            ksp.setGMRESRestart(int(restart))
        ksp.setTolerances(rtol=rtol, atol=atol, max_it=int(maxiter))
        ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
        if monitor is not None:
            ksp.setMonitor(lambda _ksp, its, rnorm: monitor(phase, int(its), float(rnorm)))
        self.ksp = ksp
        self.maxiter = int(maxiter)
        self.configured = (float(rtol), float(atol))

    def set_from_options(self) -> None:
        """Last step of the configuration: the command line and the options database."""
        inherit_diagnostics(self.prefix)
        self.ksp.setFromOptions()
        if self.ksp.getType() == "preonly":  # a direct solve: no residual norm to test
            self.ksp.setNormType(petsc().KSP.NormType.NONE)
        # the library's stopping rule, after the type is final (PETSc resets it with the type)
        if self.ksp.getNormType() != petsc().KSP.NormType.NONE:
            self.ksp.setConvergenceTest(self._converged)
        rtol, atol, dtol, max_it = self.ksp.getTolerances()
        self.ksp.setConvergenceHistory(length=int(max_it) + 1, reset=True)

    def _converged(self, ksp: Any, its: int, rnorm: float) -> int:
        reasons = petsc().KSP.ConvergedReason
        if not math.isfinite(rnorm):
            return reasons.DIVERGED_NANORINF
        rtol, atol, dtol, _ = ksp.getTolerances()
        if its == 0:
            self.r0 = rnorm
        if rnorm <= max(rtol * self.bnorm, atol):
            return reasons.CONVERGED_RTOL if rtol * self.bnorm >= atol else reasons.CONVERGED_ATOL
        if dtol > 0 and rnorm > dtol * max(self.r0, self.bnorm):
            return reasons.DIVERGED_DTOL
        return reasons.CONVERGED_ITERATING

    def solve(self, b: Any, x: Any, *, nonzero_guess: bool, transpose: bool = False,
              operator: Any = None, check_residual: bool = True,
              maxiter: int | None = None, rtol: float | None = None,
              atol: float | None = None) -> SolveResult:
        """Solve (or, with ``transpose``, KSPSolveTranspose) into ``x``; return the record.

        ``operator`` is the matrix whose (transposed) product gives the true residual; by
        default the KSP's Amat. ``maxiter`` lowers the KSP's iteration limit for this solve
        only. ``rtol`` and ``atol`` other than those the solve was created with (an adaptive
        tolerance, a correction solve) hold for this solve only; the created ones leave the
        KSP's own, which ``-<prefix>ksp_rtol`` may have changed. The solution stays in ``x``;
        ``result.x`` is a copy of this rank's part.
        """
        ksp = self.ksp
        own_rtol, own_atol, _, own_max_it = ksp.getTolerances()
        tolerances = {}
        if maxiter is not None and maxiter < own_max_it:
            tolerances["max_it"] = int(maxiter)
        asked = (own_rtol if rtol is None else float(rtol),
                 own_atol if atol is None else float(atol))
        if rtol is not None and asked != self.configured:
            tolerances.update(rtol=asked[0], atol=asked[1])
        if not tolerances:
            return self._solve(b, x, nonzero_guess, transpose, operator, check_residual)
        ksp.setTolerances(**tolerances)
        try:
            return self._solve(b, x, nonzero_guess, transpose, operator, check_residual)
        finally:
            ksp.setTolerances(rtol=own_rtol, atol=own_atol, max_it=int(own_max_it))

    def _solve(self, b: Any, x: Any, nonzero_guess: bool, transpose: bool, operator: Any,
               check_residual: bool) -> SolveResult:
        ksp = self.ksp
        rtol, atol, dtol, max_it = ksp.getTolerances()
        start = time.perf_counter()
        self.bnorm = float(b.norm())
        target = max(rtol * self.bnorm, atol)
        method = ksp.getType()
        if self.bnorm == 0.0:
            x.set(0.0)
            return SolveResult(x=x.getArray(readonly=True).copy(),
                               reason=ConvergenceReason.CONVERGED_ZERO_RHS, iterations=0,
                               residual_norms=np.zeros(1), target=target, rhs_norm=0.0,
                               seconds=time.perf_counter() - start, method=method,
                               message="zero right-hand side: x = 0, no iteration")
        if not nonzero_guess:
            x.set(0.0)
        recycled = None
        if self.recycled is not None:
            A = operator if operator is not None else ksp.getOperators()[0]
            recycled = self.recycled.start(A, b, x, transpose=transpose, warm=nonzero_guess,
                                           galerkin=ksp.getType() == "cg")
            nonzero_guess = nonzero_guess or recycled[0] > 0
        ksp.setInitialGuessNonzero(bool(nonzero_guess))
        if transpose:
            ksp.solveTranspose(b, x)
        else:
            ksp.solve(b, x)
        code = int(ksp.getConvergedReason())
        history = np.array(ksp.getConvergenceHistory(), dtype=np.float64)
        seconds = time.perf_counter() - start
        extra: dict[str, Any] = {"petsc_reason": code, "pc_side": str(ksp.getPCSide())}
        if recycled is not None:
            extra.update(self._recycling_report(recycled, history,
                                                int(ksp.getIterationNumber())))
            self.recycled.remember(x)
        if check_residual:
            true_norm = self._true_residual(b, x, operator, transpose)
            extra["true_residual_seconds"] = time.perf_counter() - start - seconds
            history = np.append(history[:-1] if history.size else history, true_norm)
        reason = from_petsc(code)
        return SolveResult(x=x.getArray(readonly=True).copy(), reason=reason,
                           iterations=int(ksp.getIterationNumber()), residual_norms=history,
                           target=target, rhs_norm=self.bnorm, seconds=seconds, method=method,
                           message=describe(ksp), extra=extra)

    def _recycling_report(self, recycled: tuple[int, float, float], history: np.ndarray,
                          iterations: int) -> dict[str, Any]:
        """``recycled_dimension`` and ``iterations_saved`` of a solve with a projected start
        (against the cold start, the estimate of :mod:`krylov_adjoint.krylov.recycling`:
        the residuals ‖b‖ and of the projected start, and the observed rate)."""
        dim, before, after = recycled
        final = float(history[-1]) if history.size else after
        space = self.recycled
        if iterations > 0 and 0 < final < after:
            space.rate = (final / after) ** (1.0 / iterations)
        saved = 0.0  # against the cold start, whose residual is ‖b‖
        if after < self.bnorm and space.rate is not None and 0 < space.rate < 1:
            saved = (math.log(self.bnorm / after) / -math.log(space.rate) if after > 0
                     else float(iterations))
        return {"recycled_dimension": dim, "iterations_saved": saved,
                "residual_before_projection": before}

    def _true_residual(self, b: Any, x: Any, operator: Any, transpose: bool) -> float:
        A = operator if operator is not None else self.ksp.getOperators()[0]
        r = b.duplicate()
        if transpose:
            A.multTranspose(x, r)
        else:
            A.mult(x, r)
        r.aypx(-1.0, b)
        norm = float(r.norm())
        r.destroy()
        return norm

    def destroy(self) -> None:
        """Free the KSP (and the kept solutions)."""
        if self.recycled is not None:
            self.recycled.destroy()
        self.ksp.destroy()

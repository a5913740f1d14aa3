"""Inexact Newton–CG with an Armijo line search, on adjoint gradients and Hessian actions.

Progress goes through the ``logging`` logger ``krylov_adjoint.newton``: one INFO line at the
start, one per iteration (J, ‖g‖, Hessian kind, forcing term, CG iterations and why CG
stopped, step length, backtracks, solves so far) and one at the end (WARNING when it did not
converge). A CG truncated on negative curvature is logged too (INFO in a Newton iteration,
WARNING in a Gauss–Newton one, whose Hessian is positive semi-definite in exact arithmetic).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .._checks import refuse_complex_parameters
from ..errors import CallbackError, InputError, KrylovAdjointError, OptimizationError
from .cg import steihaug_cg
from .forcing import ConstantForcing, EisenstatWalker, as_forcing
from .result import NewtonIteration, NewtonResult

__all__ = ["SecondOrderSolver", "newton_cg"]

LOGGER = logging.getLogger("krylov_adjoint.newton")

#: Factor of each Armijo backtrack.
_SHRINK = 0.5


class SecondOrderSolver(Protocol):
    """What :func:`newton_cg` needs of a solver (``AdjointSolver``, ``PetscAdjointSolver``).

    ``gradient(θ)`` returns an object with ``.objective`` (J, global) and ``.gradient``
    (dJ/dθ, this rank's part); ``objective(θ)`` returns J; both Hessian actions return an
    object whose ``.product`` is ``H·dθ`` (this rank's part).
    """

    def gradient(self, theta: Any) -> Any: ...

    def objective(self, theta: Any) -> float: ...

    def hessian_vector_product(self, theta: Any, dtheta: Any) -> Any: ...

    def gauss_newton_vector_product(self, theta: Any, dtheta: Any) -> Any: ...


class _Counts:
    """Gradient evaluations, Hessian actions and J-only evaluations so far."""

    def __init__(self) -> None:
        self.gradients = 0
        self.hessian_actions = 0
        self.objectives = 0

    @property
    def solves(self) -> int:
        return 2 * self.gradients + 2 * self.hessian_actions + self.objectives


def newton_cg(solver: SecondOrderSolver, theta0: Any, *, prior: Any = None,
              gtol: float = 1e-6, gatol: float = 0.0, maxiter: int = 50,
              gauss_newton_iterations: int = 3, cg_maxiter: int = 100,
              forcing: str | float | EisenstatWalker | ConstantForcing = "eisenstat-walker",
              c_armijo: float = 1e-4, max_backtracks: int = 20,
              dot: Callable[[np.ndarray, np.ndarray], float] | None = None,
              callback: Callable[[NewtonIteration], Any] | None = None,
              raise_on_failure: bool = True, logger: logging.Logger | None = None
              ) -> NewtonResult:
    """Minimise J(θ) by inexact Newton–CG with adjoint gradients and Hessian actions.

    Each iteration evaluates ``g = dJ/dθ`` (2 solves), solves ``H p = −g`` by CG to the
    forcing tolerance ``‖H p + g‖ ≤ η_k‖g‖`` (2 solves per Hessian action), truncating on
    negative curvature (Steihaug), and takes ``θ + α p`` with the first ``α = 1, ½, ¼, …``
    meeting Armijo's condition ``J(θ + α p) ≤ J(θ) + c α gᵀp``.

    Parameters
    ----------
    solver : SecondOrderSolver
        An :class:`~krylov_adjoint.AdjointSolver` or a PETSc one, or any object with
        ``gradient``, ``objective``, ``hessian_vector_product`` and
        ``gauss_newton_vector_product`` (see :class:`SecondOrderSolver`).
    theta0 : array
        The starting point (this rank's part under MPI); not modified.
    prior : object with ``apply_inverse(v)``, or callable ``v -> R⁻¹v``, optional
        The inverse of the regularisation Hessian R (the prior precision), used as the CG
        preconditioner: when the data term has low effective rank, ``R⁻¹H`` is a low-rank
        perturbation of the identity and CG needs few iterations. None: no preconditioner.
    gtol, gatol : float
        Stop when ``‖g‖ ≤ max(gtol·‖g(θ₀)‖, gatol)``, ‖·‖ the norm of ``dot``.
    maxiter : int
        At most this many Newton steps.
    gauss_newton_iterations : int
        The first this many iterations use the Gauss–Newton Hessian (positive semi-definite,
        robust far from the minimiser), the later ones the full Hessian (quadratic
        convergence, also for problems whose residual does not vanish at the minimiser).
    cg_maxiter : int
        At most this many CG iterations (Hessian actions) per Newton step.
    forcing : "eisenstat-walker", float in (0, 1) or a forcing rule
        ``"eisenstat-walker"``: :class:`~krylov_adjoint.newton.EisenstatWalker` (choice 2 with
        safeguards), loose solves far away and tight ones near the minimiser. A float: a
        constant η. A rule object is used as is (it keeps state: pass a fresh one per run).
    c_armijo : float
        Armijo's sufficient-decrease constant, in (0, 1).
    max_backtracks : int
        The line search fails after this many halvings of α.
    dot : callable ``(a, b) -> float``, optional
        The inner product of θ-vectors; default ``numpy.dot``. Under MPI pass a global one,
        the same number on every rank, e.g. ``lambda a, b: comm.allreduce(a @ b)``: every
        decision then depends only on global quantities and all ranks take the same path.
    callback : callable ``(NewtonIteration) -> None``, optional
        Called after every iteration with its record.
    raise_on_failure : bool
        Raise :class:`~krylov_adjoint.OptimizationError` (carrying the result) when the line
        search fails or ``maxiter`` is reached without convergence. With False the result is
        returned and ``converged``/``reason`` tell.
    logger : logging.Logger, optional
        Defaults to ``logging.getLogger("krylov_adjoint.newton")``.

    Returns
    -------
    NewtonResult
        θ, J, g, the reason, the history of every iteration and the counts of solves.

    Raises
    ------
    OptimizationError
        No convergence and ``raise_on_failure`` (``exc.result`` is the :class:`NewtonResult`).
    KrylovAdjointError
        A solve of the solver failed (e.g. :class:`~krylov_adjoint.ConvergenceError`); the
        iterations so far are attached as ``exc.history``.

    Notes
    -----
    The first trial ``α = 1`` is evaluated with a gradient (J and g, 2 solves), since it is
    accepted in most iterations and its gradient is then the next one; the backtracks use
    J alone (1 solve), and the accepted point then costs one more gradient. The Hessian
    actions at θ_k follow the gradient at θ_k, so a solver that keeps x and λ of its last
    gradient (as :class:`~krylov_adjoint.AdjointSolver` does) spends two solves per action;
    an action whose result says ``gradient_reused=False`` is counted with its extra gradient.

    Examples
    --------
    ``J(θ) = ½‖e^θ − d‖² + 0.05‖θ‖²``, elementwise, so both Hessians are diagonal:

    >>> import numpy as np
    >>> from types import SimpleNamespace as Result
    >>> class Toy:
    ...     d = np.array([1.0, 2.0, 3.0])
    ...     def objective(self, th):
    ...         return 0.5 * np.sum((np.exp(th) - self.d) ** 2) + 0.05 * th @ th
    ...     def gradient(self, th):
    ...         g = (np.exp(th) - self.d) * np.exp(th) + 0.1 * th
    ...         return Result(objective=self.objective(th), gradient=g)
    ...     def gauss_newton_vector_product(self, th, v):
    ...         return Result(product=(np.exp(2 * th) + 0.1) * v)
    ...     def hessian_vector_product(self, th, v):
    ...         return Result(product=((2 * np.exp(th) - self.d) * np.exp(th) + 0.1) * v)
    >>> res = newton_cg(Toy(), np.zeros(3), gtol=1e-10, gauss_newton_iterations=2)
    >>> res.converged, res.reason, np.round(res.theta, 4)
    (True, 'converged', array([0.    , 0.6758, 1.0863]))
    >>> [rec.hessian for rec in res.history][:3]
    ['gauss-newton', 'gauss-newton', 'newton']
    >>> res.solves == 2 * res.gradient_evaluations + 2 * res.hessian_actions \\
    ...     + res.objective_evaluations
    True
    """
    log = LOGGER if logger is None else logger
    _check_settings(gtol=gtol, gatol=gatol, maxiter=maxiter,
                    gauss_newton_iterations=gauss_newton_iterations, cg_maxiter=cg_maxiter,
                    c_armijo=c_armijo, max_backtracks=max_backtracks)
    _check_solver(solver, maxiter, gauss_newton_iterations)
    rule = as_forcing(forcing)
    inner = _as_dot(dot)
    precondition = _as_preconditioner(prior)
    refuse_complex_parameters(theta0, "theta0")
    theta = np.array(theta0, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(theta)):
        raise InputError("theta0", "contains non-finite values")

    counts = _Counts()
    history: list[NewtonIteration] = []
    start = time.perf_counter()
    try:
        J, g = _gradient(solver, theta, counts)
        gnorm = g0norm = _norm(g, inner)
        target = max(gtol * g0norm, gatol)
        log.info("Newton-CG: J = %.10e, |g| = %.3e, target |g| <= %.3e", J, gnorm, target)
        reason = None
        message = ""
        for k in range(maxiter):
            if gnorm <= target:
                break
            kind = "gauss-newton" if k < gauss_newton_iterations else "newton"
            eta = rule.next(gnorm, target=target)
            hessp = _hessian_action(solver, theta, kind, counts)
            cg = steihaug_cg(hessp, g, rtol=eta, maxiter=cg_maxiter,
                             precondition=precondition, dot=inner)
            if cg.negative_curvature:
                (log.warning if kind == "gauss-newton" else log.info)(
                    "iteration %d: negative curvature (d'Hd/d'd = %.3e) at CG iteration %d of "
                    "the %s system: CG truncated (Steihaug)", k + 1, cg.curvature,
                    cg.iterations, kind)
            p = cg.step
            slope = float(inner(g, p))
            if not slope < 0:  # only with inexact or non-symmetric Hessian actions
                log.warning("iteration %d: the CG step is not a descent direction (g'p = "
                            "%.3e); taking the preconditioned steepest descent", k + 1, slope)
                p = -np.asarray(precondition(g), dtype=np.float64)
                slope = float(inner(g, p))
            alpha, backtracks, J_new, theta_new, g_new = _armijo(
                solver, theta, p, J, slope, c_armijo, max_backtracks, counts)
            record = NewtonIteration(
                iteration=k + 1, objective=J, gradient_norm=gnorm, hessian=kind, forcing=eta,
                cg_iterations=cg.iterations, cg_reason=cg.reason,
                negative_curvature=int(cg.negative_curvature), step_length=alpha,
                backtracks=backtracks, objective_new=J_new,
                gradient_evaluations=counts.gradients, hessian_actions=counts.hessian_actions,
                objective_evaluations=counts.objectives, solves=counts.solves,
                elapsed=time.perf_counter() - start)
            history.append(record)
            log.info("iteration %d (%s): J = %.10e, |g| = %.3e, eta = %.2e, CG %d it (%s), "
                     "alpha = %.3e, %d backtracks, %d solves so far", k + 1, kind, J, gnorm,
                     eta, cg.iterations, cg.reason, alpha, backtracks, counts.solves)
            if callback is not None:
                callback(record)
            if g_new is None:
                reason = "line_search_failed"
                message = (
                    f"at iteration {k + 1} no step met the Armijo condition after "
                    f"{max_backtracks} halvings (last alpha = {alpha:.3e}, J = {J_new:.6e} "
                    f"against J(theta) = {J:.6e}, slope g'p = {slope:.3e}); the gradient or "
                    "the Hessian action may be inaccurate (tighten the solver's rtol)")
                break
            theta, J, g = theta_new, J_new, g_new
            gnorm = _norm(g, inner)
    except KrylovAdjointError as exc:
        _attach_history(exc, history, log)
        raise

    if reason is None:
        if gnorm <= target:
            reason = "converged"
            message = (f"|g| = {gnorm:.3e} <= {target:.3e} (|g|/|g0| = "
                       f"{_ratio(gnorm, g0norm):.3e}) after {len(history)} iterations")
        else:
            reason = "maxiter"
            message = (f"{maxiter} iterations reached with |g| = {gnorm:.3e} > target "
                       f"{target:.3e} (|g|/|g0| = {_ratio(gnorm, g0norm):.3e})")
    result = NewtonResult(
        theta=theta, objective=J, gradient=g, gradient_norm=gnorm,
        initial_gradient_norm=g0norm, target=target, iterations=len(history),
        converged=reason == "converged", reason=reason, message=message,
        history=tuple(history), gradient_evaluations=counts.gradients,
        hessian_actions=counts.hessian_actions, objective_evaluations=counts.objectives,
        solves=counts.solves)
    (log.info if result.converged else log.warning)(
        "Newton-CG %s: %s; %d solves", reason, message, counts.solves)
    if not result.converged and raise_on_failure:
        raise OptimizationError(result)
    return result


# -- pieces of the loop -------------------------------------------------------------------
def _gradient(solver: SecondOrderSolver, theta: np.ndarray, counts: _Counts
              ) -> tuple[float, np.ndarray]:
    result = solver.gradient(theta)
    counts.gradients += 1
    g = np.asarray(result.gradient, dtype=np.float64)
    if g.shape != theta.shape:
        raise CallbackError("solver.gradient", f"returned a gradient of shape {g.shape} for "
                            f"theta of shape {theta.shape}")
    return float(result.objective), g


def _hessian_action(solver: SecondOrderSolver, theta: np.ndarray, kind: str, counts: _Counts
                    ) -> Callable[[np.ndarray], np.ndarray]:
    name = "gauss_newton_vector_product" if kind == "gauss-newton" else "hessian_vector_product"
    act = getattr(solver, name)

    def hessp(v: np.ndarray) -> np.ndarray:
        counts.hessian_actions += 1
        result = act(theta, v)
        if not getattr(result, "gradient_reused", True):  # x and λ at θ were solved again
            counts.gradients += 1
        product = np.asarray(result.product, dtype=np.float64)
        if product.shape != theta.shape:
            raise CallbackError(f"solver.{name}", f"returned a product of shape "
                                f"{product.shape} for theta of shape {theta.shape}")
        return product

    return hessp


def _armijo(solver: SecondOrderSolver, theta: np.ndarray, p: np.ndarray, J: float,
            slope: float, c: float, max_backtracks: int, counts: _Counts
            ) -> tuple[float, int, float, np.ndarray, np.ndarray | None]:
    """``(alpha, backtracks, J_new, theta_new, g_new)``; g_new is None when no step passed.

    ``theta_new`` is the very array the last gradient was evaluated at, kept as the next
    iterate.
    """
    alpha = 1.0
    trial = theta + p
    J_new, g_new = _gradient(solver, trial, counts)
    backtracks = 0
    while not J_new <= J + c * alpha * slope:  # NaN fails too
        if backtracks == max_backtracks:
            return alpha, backtracks, J_new, trial, None
        backtracks += 1
        alpha *= _SHRINK
        trial = theta + alpha * p
        J_new = float(solver.objective(trial))
        counts.objectives += 1
        g_new = None
    if g_new is None:
        J_new, g_new = _gradient(solver, trial, counts)
    return alpha, backtracks, J_new, trial, g_new


# -- inputs -------------------------------------------------------------------------------
def _check_settings(**settings: float) -> None:
    for name in ("gtol", "gatol"):
        value = settings[name]
        if not (math.isfinite(value) and value >= 0):
            raise InputError(name, f"must be finite and >= 0, got {value}")
    if settings["gtol"] == 0 and settings["gatol"] == 0:
        raise InputError("gtol", "gtol and gatol are both 0: the iteration could never stop "
                         "on convergence")
    for name in ("maxiter", "cg_maxiter"):
        if int(settings[name]) != settings[name] or settings[name] < 1:
            raise InputError(name, f"must be an integer >= 1, got {settings[name]}")
    for name in ("gauss_newton_iterations", "max_backtracks"):
        if int(settings[name]) != settings[name] or settings[name] < 0:
            raise InputError(name, f"must be an integer >= 0, got {settings[name]}")
    if not 0 < settings["c_armijo"] < 1:
        raise InputError("c_armijo", f"must be in (0, 1), got {settings['c_armijo']}")


def _check_solver(solver: Any, maxiter: int, gauss_newton_iterations: int) -> None:
    needed = ["gradient", "objective"]
    if gauss_newton_iterations > 0:
        needed.append("gauss_newton_vector_product")
    if maxiter > gauss_newton_iterations:
        needed.append("hessian_vector_product")
    missing = [name for name in needed if not callable(getattr(solver, name, None))]
    if missing:
        raise TypeError(f"newton_cg: the solver ({type(solver).__name__}) has no "
                        f"{', '.join(missing)}; it needs gradient, objective and the Hessian "
                        "actions it will use")


def _as_dot(dot: Callable[[np.ndarray, np.ndarray], float] | None
            ) -> Callable[[np.ndarray, np.ndarray], float]:
    if dot is None:
        return lambda a, b: float(np.dot(a, b))
    if not callable(dot):
        raise TypeError(f"dot must be callable (a, b) -> float, got {type(dot).__name__}")
    return dot


def _as_preconditioner(prior: Any) -> Callable[[np.ndarray], np.ndarray]:
    if prior is None:
        return lambda v: v
    apply_inverse = getattr(prior, "apply_inverse", None)
    if callable(apply_inverse):
        return lambda v: np.asarray(apply_inverse(v), dtype=np.float64)
    if callable(prior):
        return lambda v: np.asarray(prior(v), dtype=np.float64)
    raise TypeError("prior must have an apply_inverse(v) method or be a callable v -> R^-1 v, "
                    f"got {type(prior).__name__}")


def _norm(v: np.ndarray, dot: Callable[[np.ndarray, np.ndarray], float]) -> float:
    return math.sqrt(max(float(dot(v, v)), 0.0))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def _attach_history(exc: KrylovAdjointError, history: list[NewtonIteration],
                    log: logging.Logger) -> None:
    """Give a failed solve's exception the iterations so far."""
    exc.history = tuple(history)  # type: ignore[attr-defined]
    note = (f"raised by newton_cg after {len(history)} completed iteration(s): their "
            "records are in this exception's .history")
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)
    log.warning("Newton-CG stopped by %s: %s", type(exc).__name__, note)

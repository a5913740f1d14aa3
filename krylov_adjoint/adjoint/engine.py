"""The gradient engine: primal solve, adjoint solve, dJ/dθ assembly, reuse across θ."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import ConvergenceError, MissingCallbackError
from ..krylov.result import SolveResult
from ..krylov.solve import METHODS, solve
from ..krylov.stopping import Monitor, validate_tolerances
from ..precond.base import TransposedPreconditioner
from ..problem.problem import AdjointProblem
from ..problem.structure import Structure
from .preconditioning import PreconditionerCache
from .result import GradientResult, TangentResult

__all__ = ["AdjointSolver"]


class AdjointSolver:
    """Objective, gradient and directional derivatives of an :class:`AdjointProblem`.

    One call of :meth:`gradient` solves ``A(θ) x = b(θ)``, then ``A(θ)ᵀ λ = ∂J/∂x`` with the
    same Krylov method and the *transpose* of the same preconditioner (no second set-up), and
    returns ``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)`` through the user's VJPs.

    Parameters
    ----------
    problem : AdjointProblem
    method : {"auto", "gmres", "cg", "bicgstab"}
        ``"auto"`` is CG for a problem declared SPD, GMRES otherwise (and GMRES also when
        the preconditioner is known not to be symmetric, e.g. an AMG F-cycle). CG is refused
        unless the problem is declared ``"spd"``, or with a non-symmetric preconditioner.
    preconditioner : str, Preconditioner, callable or None
        ``"auto"`` (AMG when the operator has an ``assemble`` callback, else none), ``"amg"``,
        ``"ilu"``, ``"jacobi"``, ``"none"``/None, a ready preconditioner object with
        ``apply``/``apply_transpose``, or a callable ``A -> Preconditioner``.
    preconditioner_options : dict, optional
        Keyword arguments of the preconditioner (e.g. ``{"method": "air"}`` for AMG).
    rtol, atol : float
        Primal stopping rule ``‖b − A x‖ ≤ max(rtol‖b‖, atol)`` on the true residual, as in
        scipy.
    adjoint_rtol, adjoint_atol : float, optional
        The same for ``‖∂J/∂x − Aᵀλ‖``; default to ``rtol`` and ``atol``.
    maxiter : int, optional
        Per solve; default ``min(10 N, 10000)``, at least 100.
    restart : int
        GMRES restart length.
    warm_start : bool
        Start each solve from the previous call's x and λ (useful in optimisation loops).
    raise_on_failure : bool
        Raise :class:`~krylov_adjoint.ConvergenceError` (carrying the :class:`SolveResult`)
        when a solve does not converge. With False the result is returned and its solves'
        ``reason`` tells; its gradient must then not be trusted.
    rebuild_factor : float or None
        Rebuild the preconditioner at the next call when the primal iterations exceed this
        factor times those right after set-up (plus one); None never rebuilds automatically.
    reuse_preconditioner : bool
        Keep the preconditioner across θ (rebuilt per ``rebuild_factor``). False sets it up
        again for every new θ, e.g. in topology optimisation where A changes a lot per step:
        once per θ, shared by the primal and adjoint solves either way.
    monitor : callable ``(phase, iteration, residual_norm)``, optional
        Called at every Krylov iteration of every solve; ``phase`` is ``"primal"``,
        ``"adjoint"`` or ``"tangent"``.

    Examples
    --------
    ``A(θ) = diag(θ)``, ``b = 1``, ``J = sum(x)``, so ``dJ/dθ = −1/θ²``:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                            vjp=lambda th, x, lam: lam * x)
    >>> problem = ka.AdjointProblem(op, np.ones(3), ka.LinearFunctional(np.ones(3)),
    ...                             n_params=3)
    >>> result = ka.AdjointSolver(problem, rtol=1e-12).gradient(np.array([1.0, 2.0, 4.0]))
    >>> np.round(result.gradient, 6)
    array([-1.    , -0.25  , -0.0625])
    >>> result.primal.reason.name, result.adjoint_solve.reason.name
    ('CONVERGED_RTOL', 'CONVERGED_RTOL')
    """

    def __init__(self, problem: AdjointProblem, *, method: str = "auto",
                 preconditioner: Any = "auto", preconditioner_options: dict | None = None,
                 rtol: float = 1e-8, atol: float = 0.0, adjoint_rtol: float | None = None,
                 adjoint_atol: float | None = None, maxiter: int | None = None,
                 restart: int = 30, warm_start: bool = True, raise_on_failure: bool = True,
                 rebuild_factor: float | None = 1.5, reuse_preconditioner: bool = True,
                 monitor: Monitor | None = None) -> None:
        if not isinstance(problem, AdjointProblem):
            raise TypeError(f"problem must be an AdjointProblem, got {type(problem).__name__}")
        self._auto_method = method == "auto"
        if method == "auto":
            method = "cg" if problem.structure is Structure.SPD else "gmres"
        if method not in METHODS:
            raise ValueError(f"method must be 'auto' or one of {sorted(METHODS)}, got {method!r}")
        if method == "cg" and problem.structure is not Structure.SPD:
            raise ValueError(
                f"method='cg' needs a symmetric positive definite operator, but the problem is "
                f"declared {problem.structure.value!r}: declare structure='spd' on the "
                "operator if it is, or use 'gmres' or 'bicgstab'"
            )
        self.adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
        self.adjoint_atol = atol if adjoint_atol is None else adjoint_atol
        validate_tolerances(rtol, atol, maxiter, problem.n)
        validate_tolerances(self.adjoint_rtol, self.adjoint_atol, maxiter, problem.n)
        self.problem = problem
        self.method = method
        self.rtol, self.atol, self.maxiter, self.restart = rtol, atol, maxiter, restart
        self.warm_start = warm_start
        self.raise_on_failure = raise_on_failure
        self.monitor = monitor
        self.preconditioner = PreconditionerCache(problem, preconditioner,
                                                  preconditioner_options, rebuild_factor,
                                                  reuse=reuse_preconditioner)
        self._last_x: np.ndarray | None = None
        self._last_adjoint: np.ndarray | None = None

    # -- public API ---------------------------------------------------------------
    def gradient(self, theta: Any) -> GradientResult:
        """J(θ) and dJ/dθ by one primal and one adjoint solve.

        Raises
        ------
        ConvergenceError
            When a solve does not converge and ``raise_on_failure`` is True.
        CallbackError, InputError
            On a bad θ or a bad callback output (the message names the culprit).
        """
        start = time.perf_counter()
        theta = self.problem.check_theta(theta)
        times: dict[str, float] = {}
        M, rebuilt, times["setup"], note = self.preconditioner.get(theta)
        x, primal = self._primal(theta, M, times)

        tick = time.perf_counter()
        objective = self.problem.objective_value(x, theta)
        dj_dx = self.problem.objective_grad_x(x, theta)
        times["objective"] = time.perf_counter() - tick

        tick = time.perf_counter()
        adjoint_solve = solve(
            self.problem.linear_operator(theta).T, dj_dx, method=self._method_for(M),
            M=TransposedPreconditioner(M),
            x0=self._last_adjoint if self.warm_start else None, rtol=self.adjoint_rtol,
            atol=self.adjoint_atol, maxiter=self.maxiter, restart=self.restart,
            monitor=self.monitor,
            labels=(self.problem.operator.rmatvec_name, "preconditioner.apply_transpose"),
            phase="adjoint")
        times["adjoint"] = time.perf_counter() - tick
        self._check(adjoint_solve, "adjoint")
        lam = adjoint_solve.x
        self._last_adjoint = lam

        tick = time.perf_counter()
        grad = self.problem.parameter_gradient(theta, x, lam)
        times["gradient"] = time.perf_counter() - tick
        times["total"] = time.perf_counter() - start
        return GradientResult(objective=objective, gradient=grad, x=x, adjoint=lam,
                              primal=primal, adjoint_solve=adjoint_solve, times=times,
                              preconditioner_rebuilt=rebuilt, preconditioner_note=note)

    def objective(self, theta: Any) -> float:
        """J(θ) by one primal solve (no adjoint)."""
        theta = self.problem.check_theta(theta)
        M, _, _, _ = self.preconditioner.get(theta)
        x, _ = self._primal(theta, M, {})
        return self.problem.objective_value(x, theta)

    def solve(self, theta: Any) -> SolveResult:
        """The primal solve ``A(θ) x = b(θ)`` alone."""
        theta = self.problem.check_theta(theta)
        M, _, _, _ = self.preconditioner.get(theta)
        return self._primal(theta, M, {})[1]

    def directional_derivative(self, theta: Any, dtheta: Any) -> TangentResult:
        """dJ/dθ·dθ by one tangent (forward-mode) solve; needs the JVP callbacks.

        Solves ``A ẋ = (∂b/∂θ)dθ − (∂A/∂θ·dθ)x`` and returns
        ``∂J/∂x·ẋ + ∂J/∂θ·dθ``. Cheaper than the adjoint for a handful of directions, and an
        independent cross-check of the gradient.
        """
        problem = self.problem
        if not (problem.operator.has_jvp and problem.rhs.has_jvp):
            missing = "operator jvp" if not problem.operator.has_jvp else "rhs jvp"
            raise MissingCallbackError(f"directional_derivative needs the {missing} callback")
        theta = problem.check_theta(theta)
        dtheta = problem.check_theta(dtheta, "dtheta")
        M, _, _, _ = self.preconditioner.get(theta)
        x, primal = self._primal(theta, M, {})
        rhs = np.zeros(problem.n)
        for term, sign in ((problem.rhs_jvp(theta, dtheta), 1.0),
                           (problem.operator_jvp(theta, x, dtheta), -1.0)):
            if term is not None:
                rhs += sign * term
        tangent_solve = solve(problem.linear_operator(theta), rhs, method=self._method_for(M),
                              M=M, rtol=self.rtol, atol=self.atol, maxiter=self.maxiter,
                              restart=self.restart, monitor=self.monitor,
                              labels=("operator.matvec", "preconditioner.apply"),
                              phase="tangent")
        self._check(tangent_solve, "tangent")
        derivative = float(problem.objective_grad_x(x, theta) @ tangent_solve.x)
        direct = problem.objective_grad_theta(x, theta)
        if direct is not None:
            derivative += float(direct @ dtheta)
        return TangentResult(objective=problem.objective_value(x, theta), derivative=derivative,
                             x=x, tangent=tangent_solve.x, primal=primal,
                             tangent_solve=tangent_solve)

    def rebuild_preconditioner(self) -> None:
        """Set up the preconditioner again at the next call."""
        self.preconditioner.request_rebuild()

    def reset_warm_start(self) -> None:
        """Forget the previous x and λ: the next solves start from zero."""
        self._last_x = self._last_adjoint = None

    # -- internals ----------------------------------------------------------------
    def _primal(self, theta: np.ndarray, M: Any, times: dict[str, float]
                ) -> tuple[np.ndarray, SolveResult]:
        tick = time.perf_counter()
        b = self.problem.b(theta)
        result = solve(self.problem.linear_operator(theta), b, method=self._method_for(M), M=M,
                       x0=self._last_x if self.warm_start else None, rtol=self.rtol,
                       atol=self.atol, maxiter=self.maxiter, restart=self.restart,
                       monitor=self.monitor, labels=("operator.matvec", "preconditioner.apply"),
                       phase="primal")
        times["primal"] = time.perf_counter() - tick
        self._check(result, "primal")
        if result.converged:
            self.preconditioner.record_primal_iterations(result.iterations)
        self._last_x = result.x
        return result.x, result

    def _method_for(self, M: Any) -> str:
        """The Krylov method for a solve preconditioned by ``M``: with ``method="auto"``,
        GMRES instead of CG when M is known not to be symmetric (e.g. an AMG F-cycle)."""
        if (self._auto_method and self.method == "cg"
                and getattr(M, "is_symmetric", None) is False):
            return "gmres"
        return self.method

    def _check(self, result: SolveResult, phase: str) -> None:
        if self.raise_on_failure and not result.converged:
            raise ConvergenceError(result, phase)

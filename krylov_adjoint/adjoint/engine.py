"""The gradient engine: primal solve, adjoint solve, dJ/dθ assembly, reuse across θ.

Written once for every backend. It reads as the formula of docs/method.md:

1. bind θ (the operator's ``prepare`` runs once per new θ) and check the declared transpose;
2. set the preconditioner up, or keep it (:class:`~.reuse.PreconditionerReuse`);
3. solve ``A x = b`` (warm-started from the last *converged* x);
4. evaluate J and ∂J/∂x;
5. solve ``Aᵀ λ = ∂J/∂x`` with the same method and the transposed preconditioner;
6. assemble ``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)`` from the VJPs.

The backend (:mod:`.backend`) supplies vectors, products and Krylov solves.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import CallbackError, ConvergenceError, InputError, MissingCallbackError
from ..krylov.recycling import validate_recycle
from ..krylov.result import SolveResult
from ..krylov.solve import METHODS
from ..krylov.stopping import Monitor, validate_restart, validate_tolerances
from ..problem.bound import BoundProblem
from ..problem.sources import Sources
from ..problem.structure import Structure
from .accuracy import (
    CORRECTION_RTOL,
    MAX_ROUNDS,
    AccuracyReport,
    AccuracyTarget,
    ToleranceController,
    correction_iterations,
    estimate_errors,
    merge_solves,
    relative_residual,
)
from .backend import Backend, SolveSettings
from .checks import TRANSPOSE_PROBE_RTOL, check_derivatives, check_nullspace, probe_transpose
from .jacobian import JacobianResult, jacobian, jacobian_products
from .result import GradientResult, HessianResult, TangentResult
from .reuse import PreconditionerReuse
from .second_order import hessian_action
from .sources import SourcesResult, sources_gradient

__all__ = ["GradientEngine", "choose_method", "resolve_accuracy"]

#: The relative gradient error of ``accuracy="adaptive"``.
DEFAULT_GRADIENT_RTOL = 1e-2



def choose_method(method: str, structure: Structure, known_methods: Any = METHODS) -> str:
    """The Krylov method for ``method`` on an operator of this structure.

    ``"auto"`` is CG for a problem declared SPD, GMRES otherwise. CG is refused unless the
    problem is declared SPD, COCG unless it is declared symmetric (complex symmetric for a
    complex system).

    Examples
    --------
    >>> choose_method("auto", Structure.SPD), choose_method("auto", Structure.SYMMETRIC)
    ('cg', 'gmres')
    """
    if method == "auto":
        return "cg" if structure is Structure.SPD else "gmres"
    if known_methods is not None and method not in known_methods:
        raise ValueError(f"method must be 'auto' or one of {sorted(known_methods)}, "
                         f"got {method!r}")
    if method == "cg" and structure is not Structure.SPD:
        raise ValueError(
            f"method='cg' needs a symmetric positive definite operator, but the problem is "
            f"declared {structure.value!r}: declare structure='spd' on the operator if it "
            "is, or use 'gmres' or 'bicgstab'")
    if method == "cocg" and not structure.is_symmetric:
        raise ValueError(
            "method='cocg' needs a (complex) symmetric operator, Aᵀ = A, but the problem is "
            "declared 'general': declare structure='symmetric' on the operator if it is, or "
            "use 'gmres' or 'bicgstab'")
    return method


class GradientEngine:
    """Objective, gradient and directional derivatives, on any backend.

    The public classes :class:`~krylov_adjoint.AdjointSolver` (serial) and
    :class:`~krylov_adjoint.backends.petsc.PetscAdjointSolver` are this engine on their
    backend; their docstrings list the parameters.
    """

    def __init__(self, backend: Backend, *, method: str = "auto", rtol: float = 1e-8,
                 atol: float = 0.0, adjoint_rtol: float | None = None,
                 adjoint_atol: float | None = None, maxiter: int | None = None,
                 restart: int = 30, warm_start: bool = True, raise_on_failure: bool = True,
                 rebuild_factor: float | None = 1.5, reuse_preconditioner: bool | None = None,
                 monitor: Monitor | None = None, check_transpose: bool = True,
                 check_gradient: bool = True, accuracy: Any = "fixed",
                 error_estimate: bool = True, recycle: int = 0,
                 known_methods: Any = METHODS) -> None:
        self.backend = backend
        self._auto_method = method == "auto"
        self.method = choose_method(method, backend.structure, known_methods)
        self.adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
        self.adjoint_atol = atol if adjoint_atol is None else adjoint_atol
        self.maxiter = validate_tolerances(rtol, atol, maxiter, backend.n)
        validate_tolerances(self.adjoint_rtol, self.adjoint_atol, maxiter, backend.n)
        self.rtol, self.atol, self.restart = rtol, atol, validate_restart(restart)
        self.warm_start, self.raise_on_failure = bool(warm_start), bool(raise_on_failure)
        self.monitor = monitor
        self.check_transpose = bool(check_transpose)
        self.check_gradient = bool(check_gradient)
        self._derivatives_checked = False
        #: (bound problem, x, λ) of the last gradient, reused by Hessian actions at that θ.
        self._gradient_state: tuple[Any, Any, Any] | None = None
        if reuse_preconditioner is None:  # a factorisation is of A(θ): new θ, new set-up
            reuse_preconditioner = not backend.preconditioner_refresh_per_theta
        self.reuse = PreconditionerReuse(rebuild_factor, reuse=reuse_preconditioner,
                                         fixed=backend.preconditioner_fixed)
        self.accuracy = resolve_accuracy(accuracy)
        self.error_estimate = bool(error_estimate)
        self._tolerances = ToleranceController(floor=max(self.rtol, self.adjoint_rtol))
        #: Last converged solutions by phase (and by ``(phase, source)`` for many sources).
        self._warm: dict[Any, Any] = {}
        self.recycle = validate_recycle(recycle, backend.n)
        if self.recycle and np.dtype(getattr(backend, "dtype", np.float64)).kind == "c":
            raise ValueError(f"recycle={self.recycle}: Krylov recycling is for real systems; "
                             "use recycle=0 with a complex one")
        recycling = getattr(backend, "recycling_methods", None)
        if self.recycle and recycling is not None and self.method not in recycling:
            raise ValueError(f"recycle={self.recycle} needs a method that recycles a Krylov "
                             f"space, one of {sorted(recycling)}; method={self.method!r} "
                             "does not (use method='gmres', or recycle=0)")
        #: The right-hand sides last given to solve / solve_transpose, per phase.
        self._given_rhs: dict[str, Any] = {}
        self._probe_pair: tuple[Any, Any] | None = None

    # -- public API ---------------------------------------------------------------------
    def gradient(self, theta: Any, *, accuracy: Any = None) -> GradientResult:
        """J(θ) and dJ/dθ by one primal and one adjoint solve, with their certificate.

        Parameters
        ----------
        theta : array of shape (P,)
        accuracy : AccuracyTarget, float or "fixed", optional
            For this call only: a target (a float is ``gradient_rtol``) makes the tolerances
            adaptive (see :mod:`~krylov_adjoint.adjoint.accuracy`); ``"fixed"`` solves to
            ``rtol``/``adjoint_rtol``. Default: the solver's ``accuracy``.

        Raises
        ------
        ConvergenceError
            When a solve does not converge and ``raise_on_failure`` is True.
        CallbackError, InputError
            On a bad θ or a bad callback output (the message names the culprit).
        """
        target = self.accuracy if accuracy is None else resolve_accuracy(accuracy)
        if target is not None and not self.error_estimate:
            raise ValueError("adaptive accuracy needs the error estimate: do not pass "
                             "error_estimate=False with an accuracy target")
        start = time.perf_counter()
        times: dict[str, float] = {}
        bound = self._bind(theta, times)
        rtol = self.rtol if target is None else self._tolerances.first_rtol(target)
        adjoint_rtol = self.adjoint_rtol if target is None else max(rtol, self.adjoint_rtol)
        x, primal, rebuilt, note, abandoned, b = self._primal(bound, times, rtol=rtol)
        state = self._adjoint_and_gradient(bound, x, times, adjoint_rtol, x0="warm", b=b)
        objective, dj_dx, lam, adjoint_solve, gradient = state
        estimate, rounds, reason = None, 1, "fixed tolerances (accuracy='fixed')"
        if self.error_estimate:
            estimate = self._estimate(bound, b, x, dj_dx, lam, gradient, objective, times,
                                      (primal, adjoint_solve))
        if target is not None:
            assert estimate is not None
            while True:
                if target.met(estimate.gradient_error, estimate.gradient_norm,
                              estimate.objective_error):
                    reason = (f"estimates meet the target after {rounds} round(s) "
                              f"(relative gradient error {estimate.gradient_relative_error:.1e}"
                              f" <= {target.gradient_rtol:.1e})")
                    break
                if self._tolerances.at_floor(rtol) or rounds >= MAX_ROUNDS:
                    reason = ("the solver's rtol reached: the target is not met at the finest "
                              "tolerances allowed" if self._tolerances.at_floor(rtol) else
                              f"{MAX_ROUNDS} rounds: stopped with the target missed")
                    break
                reached = max(relative_residual(primal), relative_residual(adjoint_solve))
                rtol = self._tolerances.tighter_rtol(rtol, target.shortfall(estimate), reached)
                adjoint_rtol = max(rtol, self.adjoint_rtol)
                rounds += 1
                tick = time.perf_counter()
                x, more = self._solve("primal", bound, b, self._primal_settings(rtol), x0=x)
                primal = merge_solves(primal, more)
                times["primal"] += time.perf_counter() - tick
                objective, dj_dx, lam, extra_adjoint, gradient = self._adjoint_and_gradient(
                    bound, x, times, adjoint_rtol, x0=lam, b=b)
                adjoint_solve = merge_solves(adjoint_solve, extra_adjoint)
                estimate = self._estimate(bound, b, x, dj_dx, lam, gradient, objective,
                                          times, (primal, adjoint_solve))
            self._tolerances.learn(estimate.gradient_error, estimate.gradient_norm,
                                   estimate.objective_error,
                                   max(relative_residual(primal),
                                       relative_residual(adjoint_solve)))
        converged = primal.converged and adjoint_solve.converged
        self._gradient_state = ((bound, self._warm["primal"], self._warm["adjoint"])
                                if converged else None)
        if self._derivative_check_due(automatic_setup=bool(abandoned)):
            tick = time.perf_counter()
            self._check_derivatives(bound, x, lam)
            times["check"] = time.perf_counter() - tick
        times["total"] = time.perf_counter() - start
        report = AccuracyReport("fixed" if target is None else "adaptive", rtol, adjoint_rtol,
                                rounds, reason, target)
        return self.backend.gradient_result(
            objective=objective, gradient=gradient, x=x, adjoint=lam, primal=primal,
            adjoint_solve=adjoint_solve, times=times, preconditioner_rebuilt=rebuilt,
            preconditioner_note=note, extra=self._extra(abandoned), accuracy=report,
            error_estimate=estimate)

    def _adjoint_and_gradient(self, bound: BoundProblem, x: Any, times: dict[str, float],
                              adjoint_rtol: float, *, x0: Any, b: Any
                              ) -> tuple[float, Any, Any, SolveResult, Any]:
        """J, ∂J/∂x, the adjoint solve (from ``x0``) and the gradient at the primal x.

        A self-adjoint problem (A declared symmetric and ∂J/∂x equal to b, as for a compliance
        ``J = bᵀx``) starts its adjoint solve from x, which solves it to the primal tolerance.
        """
        tick = time.perf_counter()
        objective = self.backend.objective_value(bound, x)
        dj_dx = self.backend.objective_grad_x(bound, x)
        times["objective"] = times.get("objective", 0.0) + time.perf_counter() - tick
        if (isinstance(x0, str) and self.backend.structure.is_symmetric
                and self.backend.equal(dj_dx, b)):
            x0 = x

        tick = time.perf_counter()
        lam, adjoint_solve = self._solve("adjoint", bound, dj_dx,
                                         self._adjoint_settings(adjoint_rtol), x0=x0)
        times["adjoint"] = times.get("adjoint", 0.0) + time.perf_counter() - tick

        tick = time.perf_counter()
        gradient = self._with_nullspace_terms(
            bound, x, dj_dx, lam, self.backend.parameter_gradient(bound, x, lam))
        times["gradient"] = times.get("gradient", 0.0) + time.perf_counter() - tick
        return objective, dj_dx, lam, adjoint_solve, gradient

    def _estimate(self, bound: BoundProblem, b: Any, x: Any, dj_dx: Any, lam: Any,
                  gradient: Any, objective: float, times: dict[str, float],
                  solves: tuple[SolveResult, SolveResult]) -> Any:
        """The certificate, its correction solves capped by the rate of ``solves``."""
        tick = time.perf_counter()
        estimate = estimate_errors(self, bound, b, x, dj_dx, lam, gradient, objective,
                                   correction_iterations(*solves))
        times["estimate"] = times.get("estimate", 0.0) + time.perf_counter() - tick
        return estimate

    def objective(self, theta: Any) -> float:
        """J(θ) by one primal solve (no adjoint)."""
        bound = self._bind(theta, {})
        x = self._primal(bound, {})[0]
        return self.backend.objective_value(bound, x)

    def solve(self, theta: Any, rhs: Any = None) -> SolveResult:
        """The primal solve ``A(θ) x = b(θ)`` alone, or ``A(θ) x = rhs`` for a given one.

        With ``rhs``, the solve is warm-started only from the solution of the same
        right-hand side (at the last θ), so that solves of unrelated right-hand sides (a
        batch, a tangent) start from zero. This and :meth:`solve_transpose` are the linear
        solve ``x = A(θ)⁻¹ b`` as a differentiable primitive of JAX or PyTorch
        (:mod:`krylov_adjoint.jax`, :mod:`krylov_adjoint.torch`): its transpose is one solve
        with Aᵀ and Mᵀ from the same set-up.
        """
        bound = self._bind(theta, {})
        return self._primal(bound, {}, rhs=None if rhs is None else self._given("primal", rhs))[1]

    def solve_transpose(self, theta: Any, rhs: Any) -> SolveResult:
        """``A(θ)ᵀ λ = rhs`` with the same method and the *transpose* of the preconditioner
        of the primal solves (the same set-up; set up first if due).

        Warm-started as :meth:`solve` with a given right-hand side. This is the adjoint solve
        of :meth:`gradient` for a right-hand side chosen by the caller: the cotangent of a
        framework's reverse pass.

        Raises
        ------
        ConvergenceError
            When the solve does not converge and ``raise_on_failure`` is True.
        """
        times: dict[str, float] = {}
        bound = self._bind(theta, times)
        self._ensure_preconditioner(bound, times)
        rhs = self._given("adjoint", rhs)
        return self._solve("adjoint", bound, rhs, self._adjoint_settings(),
                           x0=self._warm_for("adjoint", rhs))[1]

    def directional_derivative(self, theta: Any, dtheta: Any) -> TangentResult:
        """dJ/dθ·dθ by one tangent (forward-mode) solve; needs the JVP callbacks.

        Solves ``A ẋ = (∂b/∂θ)dθ − (∂A/∂θ·dθ)x`` and returns ``∂J/∂x·ẋ + ∂J/∂θ·dθ``.
        Cheaper than the adjoint for a handful of directions, and an independent
        cross-check of the gradient.
        """
        self._require_jvps()
        bound = self._bind(theta, {})
        direction = self.backend.check_direction(dtheta)
        x, primal = self._primal(bound, {})[:2]
        tangent, tangent_solve = self._tangent(bound, x, direction)
        return self.backend.tangent_result(
            objective=self.backend.objective_value(bound, x),
            derivative=self._derivative(bound, x, tangent, direction), x=x, tangent=tangent,
            primal=primal, tangent_solve=tangent_solve)

    def hessian_vector_product(self, theta: Any, dtheta: Any) -> HessianResult:
        """H·dθ, the action of the Hessian of J(x(θ), θ), by forward-over-reverse.

        One tangent solve with A and M, ``A ẋ = (∂b/∂θ)dθ − (∂A/∂θ·dθ)x``, and one
        second-order adjoint solve with Aᵀ and Mᵀ,
        ``Aᵀ λ̇ = ∂²J/∂x²·ẋ + ∂²J/∂x∂θ·dθ − (∂A/∂θ·dθ)ᵀλ``, from the x, λ and set-up of the
        gradient at θ (computed first unless the last call was a gradient at the same θ);
        see :meth:`~krylov_adjoint.problem.bound.BoundProblem.hessian_action`. Needs the
        JVPs and the second-order callbacks (``operator.vjp_jvp``, ``operator.jvp_transpose``
        unless A is symmetric, ``rhs.vjp_jvp``, the objective's second derivatives).

        Raises
        ------
        MissingCallbackError
            Naming every missing callback (Gauss–Newton may still be available).
        """
        return hessian_action(self, theta, dtheta, gauss_newton=False)

    def gauss_newton_vector_product(self, theta: Any, dtheta: Any) -> HessianResult:
        """The Gauss–Newton action: :meth:`hessian_vector_product` without the terms that
        involve λ or the second derivatives of A and b. For a least-squares misfit plus a
        convex regularisation it is symmetric positive semidefinite by construction. Needs
        the JVPs and the objective's second derivatives only.
        """
        return hessian_action(self, theta, dtheta, gauss_newton=True)

    def jacobian(self, theta: Any, outputs: Any, *, mode: str = "auto") -> JacobianResult:
        """dJ_k/dθ of several outputs ``J_k(θ, x(θ))`` (a sequence of :class:`Objective`).

        One primal solve, then K adjoint solves with Mᵀ (``mode="adjoint"``, one row per
        output) or P tangent solves with M (``"tangent"``, one column per parameter);
        ``"auto"`` takes the fewer. The set-up is shared by all of them.
        """
        return jacobian(self, theta, outputs, mode=mode)

    def jacobian_operator(self, theta: Any, outputs: Any) -> Any:
        """The Jacobian of the outputs at θ as a scipy ``LinearOperator`` (K × P; on PETSc
        K × this rank's P, and every product is collective), never formed: ``matvec`` is one
        tangent solve, ``rmatvec`` one adjoint solve (after a primal solve, warm-started)."""
        import scipy.sparse.linalg as spla

        forward, transpose = jacobian_products(self, theta, outputs)
        shape = (len(list(outputs)), self.backend.problem.params_local)
        return spla.LinearOperator(shape, matvec=forward, rmatvec=transpose, dtype=np.float64)

    def sources_gradient(self, theta: Any, sources: Sources, *, solves: str = "auto",
                         block_size: int = 16) -> SourcesResult:
        """J = Σₛ Jₛ(θ, xₛ) and dJ/dθ over the S sources ``A(θ) xₛ = bₛ(θ)`` of ``sources``
        (a :class:`~krylov_adjoint.Sources`; the problem's own b and J are not used).

        One preconditioner set-up for all S primal and S adjoint solves, one source after
        another, each warm-started from its last converged x and λ (``solves="auto"`` or
        ``"one_by_one"``); on the serial backend with A and M SPD, ``"batched_cg"`` (CG in
        lockstep on blocks of at most ``block_size`` sources, the operator applied to blocks
        when declared ``block=True``) and ``"block_cg"`` (one block Krylov space: fewer
        iterations with a weak preconditioner). See :mod:`krylov_adjoint.adjoint.sources`.

        Raises
        ------
        ConvergenceError
            When a solve does not converge (``raise_on_failure``); its phase names the
            source, e.g. ``"adjoint (source 3)"``.
        CallbackError, InputError
            On a bad callback output or bad sources, naming the source (``sources[3]``).
        """
        return sources_gradient(self, theta, sources, solves=solves, block_size=block_size)

    @property
    def setups(self) -> int:
        """How many times the preconditioner was set up."""
        return self.reuse.setups

    def rebuild_preconditioner(self) -> None:
        """Set up the preconditioner again at the next call."""
        self.reuse.request()

    def reset_warm_start(self) -> None:
        """Forget the previous x and λ: the next solves start from zero."""
        self._warm.clear()
        self._given_rhs.clear()

    # -- the steps --------------------------------------------------------------------------
    def _bind(self, theta: Any, times: dict[str, float]) -> BoundProblem:
        tick = time.perf_counter()
        bound, new = self.backend.bind(theta)
        if new:
            self.reuse.new_theta()
            if self.check_transpose:
                self._probe_transpose(bound)
            if bound.operator.nullspace is not None:
                check_nullspace(self.backend, bound)
        times["bind"] = time.perf_counter() - tick
        return bound

    def _derivative_check_due(self, *, automatic_setup: bool) -> bool:
        """At the first gradient, and when the reuse rule had to set the preconditioner up
        again within the call (a failed or slowed solve: the problem changed). Not at routine
        or requested set-ups, where it would cost 1–3 % of every such gradient."""
        if not self.check_gradient:
            return False
        if not self._derivatives_checked:
            self._derivatives_checked = True
            return True
        return automatic_setup

    def _probe_transpose(self, bound: BoundProblem) -> None:
        if self._probe_pair is None:
            rng = np.random.default_rng(0)
            self._probe_pair = (self.backend.random_vector(rng),
                                self.backend.random_vector(rng))
        probe_transpose(self.backend, bound, self._probe_pair)

    def _check_derivatives(self, bound: BoundProblem, x: Any, lam: Any) -> None:
        check_derivatives(self.backend, bound, x, lam, seed=self.reuse.setups)

    def _require_jvps(self) -> None:
        """Refuse a tangent solve without the JVPs, before any solve is spent."""
        problem = self.backend.problem  # type: ignore[attr-defined]
        nullspace = problem.operator.nullspace
        if nullspace is not None and nullspace.depends_on_theta:
            raise InputError("operator.nullspace", (
                "depends on θ: forward mode (directional derivatives, Hessian actions, "
                "Jacobians by tangents) supports a constant nullspace only; gradients and "
                "Jacobians by adjoints (mode='adjoint') support a θ-dependent one"))
        if not (problem.operator.has_jvp and problem.rhs.has_jvp):
            missing = "operator jvp" if not problem.operator.has_jvp else "rhs jvp"
            raise MissingCallbackError(f"a tangent (forward-mode) solve needs the {missing} "
                                       "callback")

    def _tangent(self, bound: BoundProblem, x: Any, direction: Any) -> tuple[Any, SolveResult]:
        """ẋ from ``A ẋ = (∂b/∂θ)dθ − (∂A/∂θ·dθ)x`` with M, from zero (needs the JVPs)."""
        self._require_jvps()
        rhs = self.backend.tangent_rhs(bound, x, direction)
        return self._solve("tangent", bound, rhs, self._primal_settings(phase="tangent"), x0=None)

    def _derivative(self, bound: BoundProblem, x: Any, xdot: Any, direction: Any) -> float:
        """``∂J/∂x·ẋ + ∂J/∂θ·dθ`` for the bound problem's objective."""
        return (self.backend.dot(self.backend.objective_grad_x(bound, x), xdot)
                + self.backend.direct_derivative(bound, x, direction))

    def _output_gradient(self, view: BoundProblem, x: Any) -> tuple[Any, SolveResult]:
        """dJ/dθ of the objective of ``view`` (a bound problem with another objective) at the
        primal x: one adjoint solve with Mᵀ, from zero."""
        dj_dx = self.backend.objective_grad_x(view, x)
        lam, solve = self._solve("output_adjoint", view, dj_dx,
                                 self._adjoint_settings(phase="output_adjoint"), x0=None)
        return self._with_nullspace_terms(view, x, dj_dx, lam,
                                          self.backend.parameter_gradient(view, x, lam)), solve

    def _with_nullspace_terms(self, bound: BoundProblem, x: Any, dj_dx: Any, lam: Any,
                              gradient: Any) -> Any:
        """The gradient plus the terms of a θ-dependent nullspace (docs/method.md).

        With ``x = A⁺b`` and ``λ = A⁺ᵀ ∂J/∂x``, the derivative of the pseudo-inverse at
        constant rank adds ``yᵀ(∂A/∂θ)(P_Z ∂J/∂x)`` with ``Aᵀ y = x``, and, when b was
        projected, ``(P_W b)ᵀ(∂A/∂θ) z`` with ``A z = λ``: one more solve each, none
        for a constant nullspace (then ∂A/∂θ·Z = 0 and Wᵀ·∂A/∂θ = 0, and both vanish).
        """
        nullspace = bound.operator.nullspace
        if nullspace is None or not nullspace.depends_on_theta:
            return gradient
        backend = self.backend
        if backend.nullspace_measure(bound, dj_dx, transpose=False) > 0.0:
            y, _ = self._solve("output_adjoint", bound, x,
                               self._adjoint_settings(phase="output_adjoint"), x0=None)
            term = backend.operator_vjp(bound, backend.nullspace_split(
                bound, dj_dx, transpose=False), y)
            gradient = gradient + term
        if nullspace.rhs == "project":
            b_null = backend.nullspace_split(bound, backend.rhs(bound), transpose=True)
            z, _ = self._solve("tangent", bound, lam, self._primal_settings(phase="tangent"),
                               x0=None)
            gradient = gradient + backend.operator_vjp(bound, z, b_null)
        return gradient

    def _primal(self, bound: BoundProblem, times: dict[str, float], *,
                rtol: float | None = None, rhs: Any = None
                ) -> tuple[Any, SolveResult, bool, str, list[SolveResult], Any]:
        """Set-up (when due) and primal solve, with the reuse rule's second chance.

        ``rhs`` replaces b(θ) (a right-hand side given to :meth:`solve`). Returns x, the
        solve's record, whether the preconditioner was set up in this call, why (or why
        not), the records of solves abandoned for a new set-up, and the right-hand side
        solved for (b(θ) evaluated once per call).
        """
        rebuilt, note = self._ensure_preconditioner(bound, times)
        settings = self._primal_settings(rtol)
        tick = time.perf_counter()
        b = self.backend.rhs(bound) if rhs is None else rhs
        self._check_consistent(bound, b)
        x0 = "warm" if rhs is None else self._warm_for("primal", rhs)
        abandoned: list[SolveResult] = []
        kept = not rebuilt and self.reuse.automatic
        cheap = self.reuse.may_keep_interpolation and self.backend.can_keep_interpolation()
        first = replace(settings, maxiter=self.reuse.iteration_cap(
            settings.maxiter, settings.rtol, cheap=cheap)) if kept else settings
        x, result = self._solve("primal", bound, b, first, x0=x0, check=not kept)
        if kept and not result.converged:
            abandoned.append(result)
            why = (f"the primal solve with the kept preconditioner stopped: {result.reason.name}"
                   f" after {result.iterations} iterations")
            seconds = self._set_up(bound)
            times["setup"] = times.get("setup", 0.0) + seconds
            tick += seconds  # the primal time excludes the set-up
            rebuilt, note = True, (f"{self.backend.preconditioner_name} set up again ({why})"
                                   f"{self._kept_note()}")
            x0 = x if self.backend.is_finite(x) else None
            x, result = self._solve("primal", bound, b, settings, x0=x0)
        times["primal"] = time.perf_counter() - tick
        if result.converged:
            self.reuse.record_primal(result.iterations, result.residual_norms)
        return x, result, rebuilt, note, abandoned, b

    def _check_consistent(self, bound: BoundProblem, b: Any) -> None:
        """Refuse a right-hand side with a component along the nullspace of Aᵀ (declared
        ``rhs="check"``); the backend's solve projects b in every case."""
        nullspace = bound.operator.nullspace
        if nullspace is None or nullspace.rhs != "check":
            return
        ratio = self.backend.nullspace_measure(bound, b, transpose=True)
        if ratio > nullspace.consistency_rtol:
            raise CallbackError("rhs", (
                f"is inconsistent with the singular A(θ): its component along the nullspace "
                f"of A(θ)ᵀ is {ratio:.2e} of ‖b‖ (> consistency_rtol = "
                f"{nullspace.consistency_rtol:.0e}), so A x = b has no solution. Fix the "
                "data (e.g. sources summing to zero for a pure-Neumann problem), or declare "
                "Nullspace(..., rhs='project') for the least-squares solution A⁺b"))

    def _ensure_preconditioner(self, bound: BoundProblem, times: dict[str, float]
                               ) -> tuple[bool, str]:
        if not self.reuse.stale_reason:
            times["setup"] = 0.0
            return False, f"{self.backend.preconditioner_name} reused"
        reason = self.reuse.stale_reason
        times["setup"] = self._set_up(bound)
        return True, f"{self.backend.preconditioner_name} set up ({reason}){self._kept_note()}"

    def _kept_note(self) -> str:
        """What a set-up's note adds when it kept the coarsening."""
        return ", coarsening kept" if self.reuse.kept_interpolation else ""

    def _set_up(self, bound: BoundProblem) -> float:
        tick = time.perf_counter()
        kept = self.backend.set_up_preconditioner(
            bound, keep_interpolation=self.reuse.may_keep_interpolation)
        self.reuse.set_up(kept_interpolation=kept)
        if self.check_transpose and self.backend.structure.is_symmetric:
            gap = self.backend.assembled_symmetry_gap()
            if gap > TRANSPOSE_PROBE_RTOL:
                raise CallbackError(
                    "operator.assemble",
                    f"the assembled matrix is not symmetric (randomised test: relative "
                    f"mismatch {gap:.2e}) although structure="
                    f"{self.backend.structure.value!r} was declared")
        return time.perf_counter() - tick

    def _given(self, phase: str, rhs: Any) -> Any:
        """A right-hand side given to :meth:`solve` or :meth:`solve_transpose`, checked."""
        return self.backend.check_state(rhs, f"{phase} right-hand side")

    def _warm_for(self, phase: str, rhs: Any) -> Any:
        """``"warm"`` when ``rhs`` is the right-hand side of the last solve of this phase
        given by the caller, else None (start from zero); remembers ``rhs``."""
        last = self._given_rhs.get(phase)
        same = last is not None and self.backend.equal(last, rhs)
        self._given_rhs[phase] = self.backend.copy(rhs)
        return "warm" if same else None

    def _solve(self, phase: str, bound: BoundProblem, rhs: Any, settings: SolveSettings, *,
               x0: Any = "warm", check: bool = True) -> tuple[Any, SolveResult]:
        """One solve; warm-started from the last converged solution of this phase."""
        if isinstance(x0, str):
            x0 = self._warm.get(phase) if self.warm_start else None
        result, x = self.backend.solve(phase, bound, rhs, x0, settings)
        if result.converged and phase in ("primal", "adjoint"):
            self._warm[phase] = self.backend.copy(x)
        if check and self.raise_on_failure and not result.converged:
            raise ConvergenceError(result, phase)
        return x, result

    # -- settings -----------------------------------------------------------------------------
    def _primal_settings(self, rtol: float | None = None, phase: str = "primal"
                         ) -> SolveSettings:
        return SolveSettings(self._method_now(), self.rtol if rtol is None else rtol,
                             self.atol, self.maxiter, self.restart, self.monitor,
                             *self._recycling(phase))

    def _adjoint_settings(self, rtol: float | None = None, phase: str = "adjoint"
                          ) -> SolveSettings:
        return SolveSettings(self._method_now(), self.adjoint_rtol if rtol is None else rtol,
                             self.adjoint_atol, self.maxiter, self.restart, self.monitor,
                             *self._recycling(phase))

    def correction_settings(self, phase: str, max_iterations: int | None = None
                            ) -> SolveSettings:
        """The correction solves of the certificate (``phase`` ``"tangent"`` with M or
        ``"output_adjoint"`` with Mᵀ): relative residual :data:`~.accuracy.CORRECTION_RTOL`,
        at most ``max_iterations`` (and 50) iterations, not raised on; recycled spaces read,
        not renewed."""
        cap = min(self.maxiter, 50, max_iterations or 50)
        return SolveSettings(self._method_now(), CORRECTION_RTOL, 0.0, cap,
                             self.restart, self.monitor, *self._recycling(phase))
    def _recycling(self, phase: str) -> tuple[int, str, bool]:
        """Which recycled space a phase uses, and whether it renews it: the one rule.

        The primal and adjoint solves each renew their own space. For a symmetric A with a
        symmetric preconditioner (CG, or a preconditioner known to be symmetric), Aᵀ = A and
        Mᵀ = M: the adjoint solve is the primal's system with another right-hand side, so
        both use and renew one space. Otherwise the adjoint keeps its own: the directions
        that deflate A M are not those that deflate Aᵀ Mᵀ (the left and right eigenvectors
        differ), so reusing the primal's would only project, not deflate. The tangent solve
        (A, M) reads the primal's space and the second-order and output adjoint solves
        (Aᵀ, Mᵀ) the adjoint's, without renewing them: they are one-off systems with
        right-hand sides unlike the gradient's.
        """
        if not self.recycle:
            return 0, "", False
        shared = self.backend.structure.is_symmetric and (
            self._method_now() == "cg" or self.backend.preconditioner_is_symmetric() is True)
        transposed = phase in ("adjoint", "second_adjoint", "output_adjoint")
        space = "adjoint" if transposed and not shared else "primal"
        return self.recycle, space, phase in ("primal", "adjoint")

    def _method_now(self) -> str:
        """With ``method="auto"``, GMRES instead of CG when the preconditioner is known not
        to be symmetric (e.g. an AMG F-cycle, ILU)."""
        if (self._auto_method and self.method == "cg"
                and self.backend.preconditioner_is_symmetric() is False):
            return "gmres"
        return self.method

    def _extra(self, abandoned: list[SolveResult]) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if abandoned:
            extra["abandoned_primal"] = tuple(abandoned)
        return extra


def resolve_accuracy(accuracy: Any) -> AccuracyTarget | None:
    """The target of an ``accuracy`` option: None for ``"fixed"``.

    ``"adaptive"`` is ``AccuracyTarget(1e-2)``; a float is a ``gradient_rtol``.

    Examples
    --------
    >>> resolve_accuracy("fixed") is None, resolve_accuracy(1e-3).gradient_rtol
    (True, 0.001)
    """
    if isinstance(accuracy, AccuracyTarget):
        return accuracy
    if isinstance(accuracy, str):
        if accuracy == "fixed":
            return None
        if accuracy == "adaptive":
            return AccuracyTarget(DEFAULT_GRADIENT_RTOL)
        raise ValueError(f"accuracy must be 'fixed', 'adaptive', a float or an "
                         f"AccuracyTarget, got {accuracy!r}")
    if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool):
        return AccuracyTarget(float(accuracy))
    raise TypeError(f"accuracy must be 'fixed', 'adaptive', a float or an AccuracyTarget, "
                    f"got {type(accuracy).__name__}")


def __getattr__(name: str) -> Any:
    """``AdjointSolver`` stays importable from here, where it used to live."""
    if name == "AdjointSolver":
        from .solver import AdjointSolver

        return AdjointSolver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

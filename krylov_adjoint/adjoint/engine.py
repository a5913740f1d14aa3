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

from ..errors import CallbackError, ConvergenceError, MissingCallbackError
from ..krylov.result import SolveResult
from ..krylov.solve import METHODS
from ..krylov.stopping import Monitor, validate_restart, validate_tolerances
from ..problem.bound import BoundProblem
from ..problem.structure import Structure
from .backend import Backend, SolveSettings
from .checks import TRANSPOSE_PROBE_RTOL, check_derivatives, probe_transpose
from .jacobian import JacobianResult, jacobian, jacobian_products
from .result import GradientResult, HessianResult, TangentResult
from .reuse import PreconditionerReuse
from .second_order import hessian_action

__all__ = ["GradientEngine", "choose_method"]



def choose_method(method: str, structure: Structure, known_methods: Any = METHODS) -> str:
    """The Krylov method for ``method`` on an operator of this structure.

    ``"auto"`` is CG for a problem declared SPD, GMRES otherwise. CG is refused unless the
    problem is declared SPD.

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
                 check_gradient: bool = True,
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
        self._warm: dict[str, Any] = {}
        #: The right-hand sides last given to solve / solve_transpose, per phase.
        self._given_rhs: dict[str, Any] = {}
        self._probe_pair: tuple[Any, Any] | None = None

    # -- public API ---------------------------------------------------------------------
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
        times: dict[str, float] = {}
        bound = self._bind(theta, times)
        x, primal, rebuilt, note, abandoned = self._primal(bound, times)

        tick = time.perf_counter()
        objective = self.backend.objective_value(bound, x)
        dj_dx = self.backend.objective_grad_x(bound, x)
        times["objective"] = time.perf_counter() - tick

        tick = time.perf_counter()
        lam, adjoint_solve = self._solve("adjoint", bound, dj_dx, self._adjoint_settings())
        times["adjoint"] = time.perf_counter() - tick

        tick = time.perf_counter()
        gradient = self.backend.parameter_gradient(bound, x, lam)
        times["gradient"] = time.perf_counter() - tick
        converged = primal.converged and adjoint_solve.converged
        self._gradient_state = ((bound, self._warm["primal"], self._warm["adjoint"])
                                if converged else None)
        if self._derivative_check_due(automatic_setup=bool(abandoned)):
            tick = time.perf_counter()
            self._check_derivatives(bound, x, lam)
            times["check"] = time.perf_counter() - tick
        times["total"] = time.perf_counter() - start
        return self.backend.gradient_result(
            objective=objective, gradient=gradient, x=x, adjoint=lam, primal=primal,
            adjoint_solve=adjoint_solve, times=times, preconditioner_rebuilt=rebuilt,
            preconditioner_note=note, extra=self._extra(abandoned))

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
        x, primal, _, _, _ = self._primal(bound, {})
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
        if not (problem.operator.has_jvp and problem.rhs.has_jvp):
            missing = "operator jvp" if not problem.operator.has_jvp else "rhs jvp"
            raise MissingCallbackError(f"a tangent (forward-mode) solve needs the {missing} "
                                       "callback")

    def _tangent(self, bound: BoundProblem, x: Any, direction: Any) -> tuple[Any, SolveResult]:
        """ẋ from ``A ẋ = (∂b/∂θ)dθ − (∂A/∂θ·dθ)x`` with M, from zero (needs the JVPs)."""
        self._require_jvps()
        rhs = self.backend.tangent_rhs(bound, x, direction)
        return self._solve("tangent", bound, rhs, self._primal_settings(), x0=None)

    def _derivative(self, bound: BoundProblem, x: Any, xdot: Any, direction: Any) -> float:
        """``∂J/∂x·ẋ + ∂J/∂θ·dθ`` for the bound problem's objective."""
        return (self.backend.dot(self.backend.objective_grad_x(bound, x), xdot)
                + self.backend.direct_derivative(bound, x, direction))

    def _output_gradient(self, view: BoundProblem, x: Any) -> tuple[Any, SolveResult]:
        """dJ/dθ of the objective of ``view`` (a bound problem with another objective) at the
        primal x: one adjoint solve with Mᵀ, from zero."""
        lam, solve = self._solve("output_adjoint", view, self.backend.objective_grad_x(view, x),
                                 self._adjoint_settings(), x0=None)
        return self.backend.parameter_gradient(view, x, lam), solve

    def _primal(self, bound: BoundProblem, times: dict[str, float], *, rhs: Any = None
                ) -> tuple[Any, SolveResult, bool, str, list[SolveResult]]:
        """Set-up (when due) and primal solve, with the reuse rule's second chance.

        ``rhs`` replaces b(θ) (a right-hand side given to :meth:`solve`). Returns x, the
        solve's record, whether the preconditioner was set up in this call, why (or why
        not), and the records of solves abandoned for a new set-up.
        """
        rebuilt, note = self._ensure_preconditioner(bound, times)
        settings = self._primal_settings()
        tick = time.perf_counter()
        b = self.backend.rhs(bound) if rhs is None else rhs
        x0 = "warm" if rhs is None else self._warm_for("primal", rhs)
        abandoned: list[SolveResult] = []
        kept = not rebuilt and self.reuse.automatic
        first = replace(settings, maxiter=self.reuse.iteration_cap(settings.maxiter)) \
            if kept else settings
        x, result = self._solve("primal", bound, b, first, x0=x0, check=not kept)
        if kept and not result.converged:
            abandoned.append(result)
            why = (f"the primal solve with the kept preconditioner stopped: {result.reason.name}"
                   f" after {result.iterations} iterations")
            seconds = self._set_up(bound)
            times["setup"] = times.get("setup", 0.0) + seconds
            tick += seconds  # the primal time excludes the set-up
            rebuilt, note = True, f"{self.backend.preconditioner_name} set up again ({why})"
            x0 = x if self.backend.is_finite(x) else None
            x, result = self._solve("primal", bound, b, settings, x0=x0)
        times["primal"] = time.perf_counter() - tick
        if result.converged:
            self.reuse.record_primal(result.iterations)
        return x, result, rebuilt, note, abandoned

    def _ensure_preconditioner(self, bound: BoundProblem, times: dict[str, float]
                               ) -> tuple[bool, str]:
        if not self.reuse.stale_reason:
            times["setup"] = 0.0
            return False, f"{self.backend.preconditioner_name} reused"
        reason = self.reuse.stale_reason
        times["setup"] = self._set_up(bound)
        return True, f"{self.backend.preconditioner_name} set up ({reason})"

    def _set_up(self, bound: BoundProblem) -> float:
        tick = time.perf_counter()
        self.backend.set_up_preconditioner(bound)
        self.reuse.set_up()
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
    def _primal_settings(self) -> SolveSettings:
        return SolveSettings(self._method_now(), self.rtol, self.atol, self.maxiter,
                             self.restart, self.monitor)

    def _adjoint_settings(self) -> SolveSettings:
        return SolveSettings(self._method_now(), self.adjoint_rtol, self.adjoint_atol,
                             self.maxiter, self.restart, self.monitor)

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


def __getattr__(name: str) -> Any:
    """``AdjointSolver`` stays importable from here, where it used to live."""
    if name == "AdjointSolver":
        from .solver import AdjointSolver

        return AdjointSolver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

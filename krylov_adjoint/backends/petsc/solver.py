"""The gradient engine on PETSc/MPI: the serial :class:`~krylov_adjoint.AdjointSolver`'s API."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..._checks import as_real_vector
from ...errors import ConvergenceError, MissingCallbackError
from ...krylov.result import SolveResult
from ...krylov.stopping import Monitor, validate_tolerances
from ...problem.structure import Structure
from ._import import mpi, petsc
from .adjoint_pc import (
    ADJOINT_PC_MODES,
    MG_TYPES,
    TransposedHierarchy,
    TransposedPC,
    choose_mode,
)
from .collective import ErrorGuard
from .ksp import KrylovSolve, set_default_options
from .matrices import AssembledMatrix, as_local_rows
from .problem import BoundProblem, DistributedProblem
from .reasons import describe_petsc_error
from .result import PetscGradientResult, PetscTangentResult
from .shell import ShellOperator

__all__ = ["PetscAdjointSolver", "PC_ALIASES"]

#: Library names of preconditioners and their PETSc PC types.
PC_ALIASES = {"amg": "gamg", "none": "none", None: "none"}


class PetscAdjointSolver:
    """J(θ), dJ/dθ and directional derivatives of a :class:`DistributedProblem` with PETSc.

    The parallel counterpart of :class:`~krylov_adjoint.AdjointSolver`, with the same
    arguments and results. One :meth:`gradient` call is collective: it solves
    ``A(θ) x = b(θ)`` with a KSP on the shell operator, preconditioned from the assembled
    matrix (GAMG by default), then ``A(θ)ᵀ λ = ∂J/∂x`` with the user's ``rmatvec`` and the
    primal preconditioner transposed (no second set-up: see ``adjoint_pc``), and returns
    ``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)`` as a distributed vector.

    Parameters
    ----------
    problem : DistributedProblem
    method : str
        ``"auto"`` (CG for a problem declared SPD, else GMRES), ``"gmres"``, ``"cg"``,
        ``"bicgstab"`` or any PETSc KSP type. ``-<prefix>primal_ksp_type`` overrides it.
    preconditioner : str
        ``"auto"`` (GAMG with an ``assemble`` callback, else none), ``"amg"``/``"gamg"``,
        ``"hypre"`` (when the PETSc build has it), ``"jacobi"``, ``"bjacobi"``, ``"none"`` or
        any PETSc PC type; ``-<prefix>primal_pc_type`` overrides it.
    options : dict, optional
        Extra PETSc options for the primal solve, as defaults under its prefix (e.g.
        ``{"pc_gamg_threshold": 0.02, "mg_levels_ksp_max_it": 3}``); the command line wins.
    rtol, atol, adjoint_rtol, adjoint_atol, maxiter, restart, warm_start, raise_on_failure,
    rebuild_factor, monitor
        As in :class:`~krylov_adjoint.AdjointSolver`; the stopping rule is the serial one,
        ``‖b − A x‖ ≤ max(rtol‖b‖, atol)`` on the unpreconditioned residual.
    reuse_preconditioner : bool
        Keep the preconditioner across θ (rebuilt per ``rebuild_factor``), as the serial
        solver does. False sets it up again for every new θ: once per θ, shared by the
        primal and adjoint solves either way.
    adjoint_pc : {"auto", "shared", "transpose", "explicit"}
        How the adjoint solve is preconditioned from the primal set-up (see
        :mod:`krylov_adjoint.backends.petsc.adjoint_pc`). Giving ``-<prefix>adjoint_pc_type``
        on the command line instead builds an independent PC for the adjoint from the
        explicit transpose of the assembled matrix.
    options_prefix : str
        Prefix of every solve's options: ``<prefix>primal_``, ``<prefix>adjoint_``,
        ``<prefix>tangent_``.
    check_residual : bool
        Recompute the true residual at the end of each solve (one operator application), as
        the serial backend does; it replaces the last entry of ``residual_norms``.

    Examples
    --------
    ``A(θ) = diag(θ)``, ``b = 1``, ``J = sum(x)``, so ``dJ/dθ = −1/θ²`` (on any number of
    ranks):

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> from krylov_adjoint.backends.petsc import (DistributedOperator, DistributedProblem,
    ...                                             PetscAdjointSolver)
    >>> op = DistributedOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                          vjp=lambda th, x, lam: lam * x)
    >>> m = op.layout.local_size
    >>> problem = DistributedProblem(op, np.ones(m), ka.LinearFunctional(np.ones(m)),
    ...                              theta_layout=op.layout)
    >>> solver = PetscAdjointSolver(problem, rtol=1e-12, preconditioner="none")
    >>> theta = op.layout.local_part(np.array([1.0, 2.0, 4.0]))
    >>> result = solver.gradient(theta)
    >>> np.round(result.gather_gradient(root=None), 6)
    array([-1.    , -0.25  , -0.0625])
    >>> result.primal.reason.name, result.adjoint_solve.reason.name
    ('CONVERGED_RTOL', 'CONVERGED_RTOL')
    >>> solver.destroy()
    """

    def __init__(self, problem: DistributedProblem, *, method: str = "auto",
                 preconditioner: str | None = "auto", options: dict[str, Any] | None = None,
                 rtol: float = 1e-8, atol: float = 0.0, adjoint_rtol: float | None = None,
                 adjoint_atol: float | None = None, maxiter: int | None = None,
                 restart: int = 30, warm_start: bool = True, raise_on_failure: bool = True,
                 rebuild_factor: float | None = 1.5, reuse_preconditioner: bool = True,
                 monitor: Monitor | None = None, adjoint_pc: str = "auto",
                 options_prefix: str = "ka_", check_residual: bool = True) -> None:
        if not isinstance(problem, DistributedProblem):
            raise TypeError(f"problem must be a DistributedProblem, got {type(problem).__name__}")
        PETSc = petsc()
        if method == "auto":
            method = "cg" if problem.structure is Structure.SPD else "gmres"
        if method == "cg" and problem.structure is not Structure.SPD:
            raise ValueError(
                f"method='cg' needs a symmetric positive definite operator, but the problem is "
                f"declared {problem.structure.value!r}: declare structure='spd' on the "
                "operator if it is, or use 'gmres' or 'bicgstab'")
        self.adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
        self.adjoint_atol = atol if adjoint_atol is None else adjoint_atol
        maxiter = validate_tolerances(rtol, atol, maxiter, problem.n)
        validate_tolerances(self.adjoint_rtol, self.adjoint_atol, maxiter, problem.n)
        if rebuild_factor is not None and not rebuild_factor >= 1.0:
            raise ValueError(f"rebuild_factor must be >= 1 or None, got {rebuild_factor!r}")
        self.problem = problem
        self.comm = problem.comm
        self.method = method
        self.rtol, self.atol, self.maxiter, self.restart = rtol, atol, maxiter, restart
        self.warm_start, self.raise_on_failure = warm_start, raise_on_failure
        self.rebuild_factor, self.reuse_preconditioner = rebuild_factor, reuse_preconditioner
        self.check_residual = check_residual
        self.monitor = monitor
        self.prefix = options_prefix
        self.guard = ErrorGuard(self.comm)
        self.pc_type = self._pc_type(preconditioner)
        self.shell = ShellOperator(problem.x_layout)
        self.pmat = AssembledMatrix(problem.x_layout)

        x_layout, theta_layout = problem.x_layout, problem.theta_layout
        self._theta = theta_layout.create_vec()
        self._b, self._x = x_layout.create_vec(), x_layout.create_vec()
        self._dj_dx, self._lam = x_layout.create_vec(), x_layout.create_vec()
        self._have_x = self._have_lam = False

        common = dict(maxiter=maxiter, restart=restart, monitor=monitor)
        self.primal = KrylovSolve(self.comm, options_prefix + "primal_", "primal",
                                  method=method, rtol=rtol, atol=atol, **common)
        self.adjoint = KrylovSolve(self.comm, options_prefix + "adjoint_", "adjoint",
                                   method=method, rtol=self.adjoint_rtol,
                                   atol=self.adjoint_atol, **common)
        self._tangent: KrylovSolve | None = None
        self._configure_primal_pc(options or {})
        self.primal.set_from_options()
        self.pc_type = self.primal.ksp.getPC().getType()
        adjoint_options = PETSc.Options(options_prefix + "adjoint_")
        self.adjoint_pc_requested = "own" if adjoint_options.hasName("pc_type") else adjoint_pc
        if adjoint_pc not in ADJOINT_PC_MODES:
            raise ValueError(f"adjoint_pc must be one of {ADJOINT_PC_MODES}, got {adjoint_pc!r}")
        self.adjoint_pc_mode = ""
        self._hierarchy: TransposedHierarchy | None = None
        self._adjoint_pc_ready = False
        self.adjoint.set_from_options()
        self._bound: BoundProblem | None = None
        self._last_theta: np.ndarray | None = None
        self._stale = "first set-up"
        self.baseline_iterations: int | None = None
        self.setups = 0
        self.adjoint_setups = 0

    # -- configuration ---------------------------------------------------------------
    def _pc_type(self, preconditioner: str | None) -> str:
        op = self.problem.operator
        if preconditioner == "auto":
            preconditioner = "gamg" if op.has_assembled else "none"
        pc_type = PC_ALIASES.get(preconditioner, preconditioner)
        if not isinstance(pc_type, str):
            raise TypeError(f"preconditioner must be a PC type name, got {preconditioner!r}")
        if pc_type == "hypre" and not petsc().Sys.hasExternalPackage("hypre"):
            raise ValueError("preconditioner='hypre': this PETSc build has no hypre "
                             "(configure PETSc with --download-hypre); 'gamg' is built in")
        if pc_type not in ("none", "shell", "python") and not op.has_assembled:
            raise ValueError(
                f"preconditioner={preconditioner!r} is built from an assembled matrix, but "
                "the operator has no assemble callback: pass assemble=... to "
                "DistributedOperator, or preconditioner='none'")
        return pc_type

    def _configure_primal_pc(self, options: dict[str, Any]) -> None:
        pc = self.primal.ksp.getPC()
        pc.setType(self.pc_type)
        defaults: dict[str, Any] = {}
        if self.pc_type in MG_TYPES:
            # the preconditioner comes from the assembled matrix only (PCMG would smooth the
            # finest level with the shell operator by default)
            defaults["pc_use_amat"] = False
        if self.pc_type == "gamg":
            # smoothers with a transposed application (SOR refuses it on nonsymmetric A)
            defaults.update({"mg_levels_ksp_type": "chebyshev", "mg_levels_pc_type": "jacobi"})
        elif self.pc_type == "hypre":
            defaults.update({"pc_hypre_type": "boomeramg"})
        defaults.update(options)
        set_default_options(self.primal.prefix, defaults)

    # -- public API ------------------------------------------------------------------
    def gradient(self, theta: Any) -> PetscGradientResult:
        """J(θ) and dJ/dθ by one primal and one adjoint solve (collective).

        Parameters
        ----------
        theta : array of this rank's ``params_local`` values, or a PETSc Vec on θ's layout

        Raises
        ------
        ConvergenceError
            On every rank, when a solve does not converge and ``raise_on_failure`` is True.
        CollectiveCallbackError, CollectiveInputError
            On every rank, naming the failing rank(s), when a callback failed or an input
            was unusable on some rank.
        """
        start = time.perf_counter()
        times: dict[str, float] = {}
        bound = self._bind(theta, times)
        rebuilt, note = self._set_up_preconditioner(bound, times)
        primal = self._primal(bound, times)

        tick = time.perf_counter()
        local_value = bound.objective_value(self._x)
        bound.objective_grad_x(self._x, self._dj_dx)
        self.guard.checkpoint("the objective")
        objective = self._sum(local_value)
        times["objective"] = time.perf_counter() - tick

        self._ensure_adjoint_pc(times)
        tick = time.perf_counter()
        adjoint_solve = self.adjoint.solve(
            self._dj_dx, self._lam, nonzero_guess=self.warm_start and self._have_lam,
            check_residual=self.check_residual)
        self.guard.checkpoint("the adjoint solve")
        times["adjoint"] = time.perf_counter() - tick
        self._have_lam = True
        self._check(adjoint_solve, "adjoint")

        tick = time.perf_counter()
        gradient = self.problem.theta_layout.create_vec()
        bound.parameter_gradient(self._x, self._lam, gradient)
        self.guard.checkpoint("the gradient (vjp callbacks)")
        times["gradient"] = time.perf_counter() - tick
        times["total"] = time.perf_counter() - start
        x_vec, lam_vec = self._x.copy(), self._lam.copy()
        return PetscGradientResult(
            objective=objective, gradient=gradient.getArray(readonly=True),
            x=x_vec.getArray(readonly=True), adjoint=lam_vec.getArray(readonly=True),
            primal=primal, adjoint_solve=adjoint_solve, times=times,
            preconditioner_rebuilt=rebuilt, preconditioner_note=note,
            extra={"adjoint_pc": self.adjoint_pc_mode, "pc_type": self.pc_type,
                   "nranks": self.problem.x_layout.nranks},
            gradient_vec=gradient, x_vec=x_vec, adjoint_vec=lam_vec,
            theta_layout=self.problem.theta_layout, x_layout=self.problem.x_layout)

    def objective(self, theta: Any) -> float:
        """J(θ) by one primal solve (collective; the same value on every rank)."""
        bound = self._bind(theta, {})
        self._set_up_preconditioner(bound, {})
        self._primal(bound, {})
        local_value = bound.objective_value(self._x)
        self.guard.checkpoint("the objective")
        return self._sum(local_value)

    def solve(self, theta: Any) -> SolveResult:
        """The primal solve ``A(θ) x = b(θ)`` alone; ``result.x`` is this rank's part."""
        bound = self._bind(theta, {})
        self._set_up_preconditioner(bound, {})
        return self._primal(bound, {})

    def directional_derivative(self, theta: Any, dtheta: Any) -> PetscTangentResult:
        """dJ/dθ·dθ by one tangent (forward-mode) solve; needs the JVP callbacks."""
        problem = self.problem
        if not (problem.operator.has_jvp and problem.rhs.has_jvp):
            missing = "operator jvp" if not problem.operator.has_jvp else "rhs jvp"
            raise MissingCallbackError(f"directional_derivative needs the {missing} callback")
        bound = self._bind(theta, {})
        direction = problem.theta_layout.create_vec()
        self._copy_in(dtheta, direction, "dtheta")
        self.guard.checkpoint("the direction dtheta")
        self._set_up_preconditioner(bound, {})
        primal = self._primal(bound, {})
        layout = problem.x_layout
        rhs, work, tangent = layout.create_vec(), layout.create_vec(), layout.create_vec()
        bound.rhs_jvp(direction, rhs)
        bound.operator_jvp(self._x, direction, work)
        self.guard.checkpoint("the tangent right-hand side (jvp callbacks)")
        rhs.axpy(-1.0, work)
        solve = self._tangent_solve()
        tangent_solve = solve.solve(rhs, tangent, nonzero_guess=False, operator=self.shell.A,
                                    check_residual=self.check_residual)
        self.guard.checkpoint("the tangent solve")
        self._check(tangent_solve, "tangent")
        local_value = bound.objective_value(self._x)
        bound.objective_grad_x(self._x, work)
        self.guard.checkpoint("the objective")
        derivative = float(work.dot(tangent))
        direct = bound.problem.objective.grad_theta  # local callback, validated below
        local_direct = 0.0
        if direct is not None:
            with self.guard.local("objective.grad_theta"):
                g = direct(self._x.getArray(readonly=True), bound.theta)
                if g is not None:
                    g = as_real_vector(g, "objective.grad_theta", problem.params_local)
                    local_direct = float(g @ direction.getArray(readonly=True))
        self.guard.checkpoint("the objective")
        derivative += self._sum(local_direct)
        result = PetscTangentResult(objective=self._sum(local_value), derivative=derivative,
                                    x=self._x.getArray(readonly=True).copy(),
                                    tangent=tangent.getArray(readonly=True).copy(),
                                    primal=primal, tangent_solve=tangent_solve)
        for vec in (rhs, work, tangent, direction):
            vec.destroy()
        return result

    def rebuild_preconditioner(self) -> None:
        """Set up the preconditioner again at the next call."""
        self._stale = "rebuild requested"

    def reset_warm_start(self) -> None:
        """Forget the previous x and λ: the next solves start from zero."""
        self._have_x = self._have_lam = False

    @property
    def primal_ksp(self) -> Any:
        """The primal solve's petsc4py KSP (prefix ``<prefix>primal_``)."""
        return self.primal.ksp

    @property
    def adjoint_ksp(self) -> Any:
        """The adjoint solve's petsc4py KSP (prefix ``<prefix>adjoint_``)."""
        return self.adjoint.ksp

    def destroy(self) -> None:
        """Free the PETSc objects (collective)."""
        for solve in (self.primal, self.adjoint, self._tangent):
            if solve is not None:
                solve.destroy()
        if self._hierarchy is not None:
            self._hierarchy.destroy()
        self.shell.destroy()
        self.pmat.destroy()
        for vec in (self._theta, self._b, self._x, self._dj_dx, self._lam):
            vec.destroy()

    def __enter__(self) -> PetscAdjointSolver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    # -- internals ---------------------------------------------------------------------
    def _copy_in(self, value: Any, vec: Any, name: str) -> None:
        """Local: copy a θ-like input (array or Vec) into ``vec``, recording bad input."""
        PETSc = petsc()
        n_local = vec.getLocalSize()
        with self.guard.local(name, is_input=True):
            if isinstance(value, PETSc.Vec):
                if value.getLocalSize() != n_local or value.getSize() != vec.getSize():
                    raise ValueError(f"{name}: expected a Vec with local size {n_local} and "
                                     f"global size {vec.getSize()}, got {value.getLocalSize()}"
                                     f" and {value.getSize()}")
                value = value.getArray(readonly=True)
            vec.setArray(as_real_vector(value, name, n_local, callback=False))

    def _bind(self, theta: Any, times: dict[str, float]) -> BoundProblem:
        tick = time.perf_counter()
        self._copy_in(theta, self._theta, "theta")
        self.guard.checkpoint("the check of theta")
        local = self._theta.getArray(readonly=True)
        same = self._last_theta is not None and np.array_equal(local, self._last_theta)
        same = bool(self.comm.allreduce(int(same), op=mpi().MIN))
        if same and self._bound is not None:
            times["bind"] = time.perf_counter() - tick
            return self._bound
        if self._last_theta is not None and not self.reuse_preconditioner:
            self._stale = "new theta (reuse_preconditioner=False)"
        self._last_theta = local.copy()
        bound = self.problem.bind(self._theta, self.guard)
        self.guard.checkpoint("operator.prepare")
        self.shell.bind(bound)
        self._bound = bound
        times["bind"] = time.perf_counter() - tick
        return bound

    def _set_up_preconditioner(self, bound: BoundProblem, times: dict[str, float]
                               ) -> tuple[bool, str]:
        if not self._stale:
            times["setup"] = 0.0
            return False, f"{self.pc_type} reused"
        tick = time.perf_counter()
        reason = self._stale  # stays stale until the set-up succeeded on every rank
        ksp = self.primal.ksp
        if self.pc_type in ("none", "shell", "python"):
            ksp.setOperators(self.shell.A, self.shell.A)
        else:
            rows = None
            with self.guard.local("operator.assemble"):
                raw = bound.assemble()
                if raw is not None:
                    rows = as_local_rows(raw, self.problem.x_layout)
            self.guard.checkpoint("operator.assemble")
            P = self.pmat.update(rows, self.guard, self.problem.structure)
            ksp.setOperators(self.shell.A, P)
        ksp.setUp()
        self._set_up_local_blocks(ksp)
        self._stale = ""
        self.setups += 1
        self._adjoint_pc_ready = False
        self.baseline_iterations = None
        times["setup"] = time.perf_counter() - tick
        return True, f"{self.pc_type} set up ({reason})"

    def _set_up_local_blocks(self, ksp: Any) -> None:
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
            self.guard.record("the preconditioner set-up", RuntimeError(
                f"{describe_petsc_error(exc)} in the preconditioner's local set-up from the "
                "assembled rows of this rank (operator.assemble); PETSc's message is on "
                "this rank's stderr"))
        finally:
            PETSc.Sys.popErrorHandler()
        self.guard.checkpoint("the preconditioner set-up")

    def _ensure_adjoint_pc(self, times: dict[str, float]) -> None:
        """Collective: prepare the adjoint KSP's preconditioner after a primal set-up."""
        if self._adjoint_pc_ready:
            times.setdefault("adjoint_setup", 0.0)
            return
        tick = time.perf_counter()
        PETSc = petsc()
        primal_pc = self.primal.ksp.getPC()
        ksp = self.adjoint.ksp
        P = self.pmat.mat
        if self.adjoint_pc_requested == "own":
            mode = "own"
            PT = self.pmat.transpose() if P is not None else self.shell.AT
            ksp.setOperators(self.shell.AT, PT)
        else:
            mode = choose_mode(self.adjoint_pc_requested, self.problem.structure.is_symmetric,
                               primal_pc)
            if mode == "shared":
                # one PC object holds one pair of operators: the primal's (Aᵀ = A, declared)
                ksp.setPC(primal_pc)
            elif mode == "transpose":
                pc = PETSc.PC().createPython(TransposedPC(primal_pc), comm=self.comm)
                pc.setOptionsPrefix(self.adjoint.prefix)
                ksp.setPC(pc)
                ksp.setOperators(self.shell.AT, self.shell.AT)
            else:
                if self._hierarchy is None:
                    self._hierarchy = TransposedHierarchy(self.comm, self.adjoint.prefix)
                PT = self.pmat.transpose()
                pc = self._hierarchy.build(primal_pc, PT)
                ksp.setPC(pc)
                ksp.setOperators(self.shell.AT, PT)
        ksp.setUp()
        self.adjoint_pc_mode = mode
        self.adjoint_setups += 1
        self._adjoint_pc_ready = True
        times["adjoint_setup"] = time.perf_counter() - tick

    def _primal(self, bound: BoundProblem, times: dict[str, float]) -> SolveResult:
        tick = time.perf_counter()
        bound.rhs(self._b)
        self.guard.checkpoint("the right-hand side")
        result = self.primal.solve(self._b, self._x,
                                   nonzero_guess=self.warm_start and self._have_x,
                                   operator=self.shell.A, check_residual=self.check_residual)
        self.guard.checkpoint("the primal solve")
        times["primal"] = time.perf_counter() - tick
        self._have_x = result.converged
        self._check(result, "primal")
        if result.converged:
            self._record_primal_iterations(result.iterations)
        return result

    def _record_primal_iterations(self, iterations: int) -> None:
        if self.rebuild_factor is None:
            return
        if self.baseline_iterations is None:
            self.baseline_iterations = iterations
        elif iterations > self.rebuild_factor * self.baseline_iterations + 1:
            self._stale = (f"primal iterations grew from {self.baseline_iterations} to "
                           f"{iterations} (> {self.rebuild_factor:g}x)")

    def _tangent_solve(self) -> KrylovSolve:
        if self._tangent is None:
            solve = KrylovSolve(self.comm, self.prefix + "tangent_", "tangent",
                                method=self.method, rtol=self.rtol, atol=self.atol,
                                maxiter=self.maxiter, restart=self.restart, monitor=self.monitor)
            solve.set_from_options()
            solve.ksp.setPC(self.primal.ksp.getPC())
            self._tangent = solve
        A, P = self.primal.ksp.getOperators()
        self._tangent.ksp.setOperators(A, P)
        return self._tangent

    def _sum(self, value: float) -> float:
        return float(self.comm.allreduce(float(value), op=mpi().SUM))

    def _check(self, result: SolveResult, phase: str) -> None:
        if self.raise_on_failure and not result.converged:
            raise ConvergenceError(result, phase)

"""The PETSc backend: distributed Vecs, a shell operator, KSP and PC, the collective guard.

Mechanics only (see :mod:`krylov_adjoint.adjoint.backend`): the gradient policy is the
engine's. Every method is collective and ends with a checkpoint of the error guard, so that
a failure on one rank is raised on every rank.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..._checks import as_real_vector, refuse_complex_parameters
from ..._transpose import transpose_mismatch
from ...adjoint.backend import SolveSettings
from ...errors import InputError
from ...krylov.result import SolveResult
from ._import import mpi, petsc
from .adjoint_pc import ADJOINT_PC_MODES, MG_TYPES, TransposedHierarchy, TransposedPC, choose_mode
from .collective import ErrorGuard
from .ksp import KrylovSolve, set_default_options, set_up_local_blocks, unprefixed_defaults
from .matrices import AssembledMatrix, as_local_rows
from .nullspace import PetscNullspace
from .problem import DistributedProblem
from .result import (
    PetscGradientResult,
    PetscHessianResult,
    PetscTangentResult,
    gradient_record,
    hessian_record,
    tangent_record,
)
from .shell import ShellOperator
from .vecs import VecProblem

__all__ = ["PetscBackend", "PC_ALIASES"]

#: Options of the preconditioner's set-up that PETSc reads without the solve's prefix:
#: ``matptap_via`` (for MPIAIJ matrices "scalable", PETSc's default, or "allatonce": the
#: Galerkin products of GAMG in one pass without keeping A P, 1.45 GB less per rank after the
#: set-up at 10⁷ unknowns on 2 ranks and a slower set-up, docs/scaling.md; "scalable" or
#: "rap" on one rank). Given in ``options``, they hold during the set-up only.
UNPREFIXED_SETUP_OPTIONS = ("matptap_via",)

#: Library names of preconditioners and their PETSc PC types.
PC_ALIASES = {"amg": "gamg", "none": "none", None: "none"}

#: PC types that need no assembled matrix.
_MATRIX_FREE_PCS = ("none", "shell", "python")
#: Direct factorisations: set up again for every new θ by default.
_FACTORISATIONS = ("lu", "cholesky")
#: External packages that give PETSc a parallel LU.
_PARALLEL_DIRECT = ("mumps", "superlu_dist", "strumpack", "pastix")


def check_scalar_type(dtype: Any, scalar_type: Any) -> None:
    """Refuse a complex system on a PETSc built with real scalars (and the reverse).

    Examples
    --------
    >>> check_scalar_type(np.complex128, np.float64)
    Traceback (most recent call last):
    ...
    krylov_adjoint.errors.InputError: dtype: a complex system needs a PETSc built with ...
    """
    problem, build = np.dtype(dtype), np.dtype(scalar_type)
    if problem.kind == build.kind:
        return
    if problem.kind == "c":
        raise InputError("dtype", "a complex system needs a PETSc built with complex scalars, "
                                  f"and this one has real ones (PETSc.ScalarType is {build}): "
                                  "configure PETSc with --with-scalar-type=complex, or use the "
                                  "serial backend (AdjointSolver)")
    raise InputError("dtype", f"this PETSc is built with complex scalars ({build}) but the "
                              "system is real: use a PETSc built with real scalars")


class PetscBackend:
    """The mechanics of a :class:`DistributedProblem` on PETSc (see ``PetscAdjointSolver``).

    Parameters
    ----------
    problem : DistributedProblem
    method : str
        The Krylov method as chosen by the engine (any PETSc KSP type).
    preconditioner, options, adjoint_pc, options_prefix, check_residual
        As in :class:`~krylov_adjoint.backends.petsc.PetscAdjointSolver`.
    rtol, atol, adjoint_rtol, adjoint_atol, maxiter, restart, monitor
        Defaults of the KSPs (the command line may override them).
    """

    def __init__(self, problem: DistributedProblem, *, method: str, preconditioner: Any,
                 options: dict[str, Any] | None, rtol: float, atol: float, adjoint_rtol: float,
                 adjoint_atol: float, maxiter: int, restart: int, monitor: Any,
                 adjoint_pc: str, options_prefix: str, check_residual: bool,
                 recycle: int = 0) -> None:
        if not isinstance(problem, DistributedProblem):
            raise TypeError(f"problem must be a DistributedProblem, got {type(problem).__name__}")
        if adjoint_pc not in ADJOINT_PC_MODES:
            raise ValueError(f"adjoint_pc must be one of {ADJOINT_PC_MODES}, got {adjoint_pc!r}")
        PETSc = petsc()
        check_scalar_type(problem.dtype, PETSc.ScalarType)
        self.problem = problem
        self.n, self.structure = problem.n, problem.structure
        self.comm = problem.comm
        self.method, self.maxiter = method, maxiter
        self.check_residual = check_residual
        self.prefix = options_prefix
        self.guard = ErrorGuard(self.comm)
        self.pc_type = self._pc_type(preconditioner)
        self.shell = ShellOperator(problem.x_layout)
        self.pmat = AssembledMatrix(problem.x_layout)
        x_layout, theta_layout = problem.x_layout, problem.theta_layout
        self._theta = theta_layout.create_vec()
        self._b, self._x = x_layout.create_vec(), x_layout.create_vec()
        self._dj_dx, self._lam = x_layout.create_vec(), x_layout.create_vec()
        common = dict(maxiter=maxiter, restart=restart, monitor=monitor)
        # recycling: the primal and adjoint KSPs each project their start on their last
        # solutions (see KrylovSolve); the one-off tangent solves do not
        self.primal = KrylovSolve(self.comm, options_prefix + "primal_", "primal",
                                  method=method, rtol=rtol, atol=atol, recycle=recycle,
                                  **common)
        self.adjoint = KrylovSolve(self.comm, options_prefix + "adjoint_", "adjoint",
                                   method=method, rtol=adjoint_rtol, atol=adjoint_atol,
                                   recycle=recycle, **common)
        self._tangent_options = dict(method=method, rtol=rtol, atol=atol, **common)
        self._tangent: KrylovSolve | None = None
        self._configure_primal_pc(options or {})
        self.primal.set_from_options()
        self.pc_type = self.primal.ksp.getPC().getType()
        self.preconditioner_fixed = self.pc_type in _MATRIX_FREE_PCS
        self.preconditioner_name = self.pc_type
        self.preconditioner_refresh_per_theta = self.pc_type in _FACTORISATIONS
        # many sources go one by one through the two KSPs (see adjoint/sources.py)
        self.supports_blocks = False
        if self.preconditioner_fixed:
            self.primal.ksp.setOperators(self.shell.A, self.shell.A)
        adjoint_options = PETSc.Options(options_prefix + "adjoint_")
        self.adjoint_pc_requested = "own" if adjoint_options.hasName("pc_type") else adjoint_pc
        self.adjoint_pc_mode = ""
        self._hierarchy: TransposedHierarchy | None = None
        self._adjoint_pc_ready = False
        self._set_up_before = False
        self.adjoint.set_from_options()
        self._bound: VecProblem | None = None
        self._last_theta: np.ndarray | None = None
        self._constant_nullspace: PetscNullspace | None = None
        self.adjoint_setups = 0

    # -- configuration -------------------------------------------------------------------------
    def _pc_type(self, preconditioner: Any) -> str:
        op = self.problem.operator
        if preconditioner == "auto":
            preconditioner = "gamg" if op.has_assembled else "none"
        pc_type = PC_ALIASES.get(preconditioner, preconditioner)
        if not isinstance(pc_type, str):
            raise TypeError(f"preconditioner must be a PC type name, got {preconditioner!r}")
        if pc_type == "hypre" and not petsc().Sys.hasExternalPackage("hypre"):
            raise ValueError("preconditioner='hypre': this PETSc build has no hypre "
                             "(configure PETSc with --download-hypre); 'gamg' is built in")
        if pc_type in _FACTORISATIONS and self.comm.Get_size() > 1 and not any(
                petsc().Sys.hasExternalPackage(name) for name in _PARALLEL_DIRECT):
            raise ValueError(
                f"preconditioner={preconditioner!r} on {self.comm.Get_size()} ranks: this PETSc "
                "build has no parallel direct solver (MUMPS, SuperLU_dist, STRUMPACK or "
                "PaStiX; configure PETSc with --download-mumps), and PETSc's own LU is serial. "
                "Use 'gamg', or one rank")
        if pc_type not in _MATRIX_FREE_PCS and not op.has_assembled:
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
        # options PETSc reads without a prefix during the set-up (GAMG's Galerkin products)
        self._setup_defaults = {name: defaults.pop(name) for name in UNPREFIXED_SETUP_OPTIONS
                                if name in defaults}
        set_default_options(self.primal.prefix, defaults)

    # -- θ --------------------------------------------------------------------------------------
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
            refuse_complex_parameters(value, name)
            vec.setArray(as_real_vector(value, name, n_local, callback=False))

    def bind(self, theta: Any) -> tuple[VecProblem, bool]:
        self._copy_in(theta, self._theta, "theta")
        self.guard.checkpoint("the check of theta")
        local = self._theta.getArray(readonly=True)
        same = self._last_theta is not None and np.array_equal(local, self._last_theta)
        same = bool(self.comm.allreduce(int(same), op=mpi().MIN))
        if same and self._bound is not None:
            return self._bound, False
        self._last_theta = local.copy()
        bound = VecProblem(self.problem, self._theta.copy(), self.guard)
        self.guard.checkpoint("operator.prepare")
        self.shell.bind(bound)
        self._attach_nullspace(bound)
        self._bound = bound
        return bound, True

    def _attach_nullspace(self, bound: VecProblem) -> None:
        """Collective: the declared nullspace at θ, on the shell operators and the assembled
        matrix (built once when it does not depend on θ)."""
        declared = self.problem.operator.nullspace
        if declared is None:
            return
        if bound.nullspace is None:
            if self._constant_nullspace is not None:
                bound.nullspace = self._constant_nullspace
            else:
                columns: tuple[Any, Any] = (None, None)
                with self.guard.local("operator.nullspace"):
                    columns = declared.columns(bound.bound.theta_operator, self.problem.n_local)
                self.guard.checkpoint("operator.nullspace")
                bound.nullspace = PetscNullspace(*columns, self.problem.x_layout, self.guard)
                if not declared.depends_on_theta:
                    self._constant_nullspace = bound.nullspace
        bound.nullspace.attach(self.shell, self.pmat.mat)
    def check_state(self, value: Any, name: str) -> Any:
        vec = self.problem.x_layout.create_vec()
        self._copy_in(value, vec, name)
        self.guard.checkpoint(f"the {name}")
        return vec

    def equal(self, a: Any, b: Any) -> bool:
        local = bool(np.array_equal(a.getArray(readonly=True), b.getArray(readonly=True)))
        return bool(self.comm.allreduce(int(local), op=mpi().MIN))

    def check_direction(self, dtheta: Any) -> Any:
        direction = self.problem.theta_layout.create_vec()
        self._copy_in(dtheta, direction, "dtheta")
        self.guard.checkpoint("the direction dtheta")
        return direction

    # -- the preconditioner ----------------------------------------------------------------------
    def set_up_preconditioner(self, bound: VecProblem, *, keep_interpolation: bool) -> bool:
        ksp = self.primal.ksp
        P = self._assembled_pmat(bound)
        if bound.nullspace is not None:  # GAMG reads the near-nullspace at its set-up
            bound.nullspace.attach(self.shell, P)
        # GAMG keeps its prolongators at a new set-up (-pc_gamg_reuse_interpolation, true
        # by default); a full set-up starts from a reset PC (its options stay)
        can_keep = self.can_keep_interpolation()
        kept = keep_interpolation and can_keep
        if can_keep and not kept:
            ksp.getPC().reset()
        ksp.setOperators(self.shell.A, P)
        with unprefixed_defaults(self._setup_defaults):
            ksp.setUp()
        set_up_local_blocks(ksp, self.guard)
        self._adjoint_pc_ready = False
        self._set_up_before = True
        return kept

    def can_keep_interpolation(self) -> bool:
        return self._set_up_before and self.primal.ksp.getPC().getType() == "gamg"

    def _assembled_pmat(self, bound: VecProblem) -> Any:
        """Collective: the preconditioner's matrix at θ, from the ``assemble`` callback.

        A function of its own so that the callback's rows are freed before the set-up (a
        copy of the matrix: 1.4 GB per rank at 10⁷ unknowns on 2 ranks).
        """
        rows = None
        with self.guard.local("operator.assemble"):
            raw = bound.assemble()
            if raw is not None:
                rows = as_local_rows(raw, self.problem.x_layout)
        self.guard.checkpoint("operator.assemble")
        return self.pmat.update(rows, self.guard, self.problem.structure)

    def preconditioner_is_symmetric(self) -> bool | None:
        return None

    def assembled_symmetry_gap(self) -> float:
        P = self.pmat.mat
        if P is None:
            return 0.0
        rng = np.random.default_rng([1, self.guard.rank])
        u, v = self.random_vector(rng), self.random_vector(rng)
        Au, Av = u.duplicate(), v.duplicate()
        P.mult(u, Au)
        P.mult(v, Av)
        gap = transpose_mismatch(Au.dot(v), u.dot(Av),
                                 *(float(w.norm()) for w in (Au, v, u, Av)))
        for vec in (u, v, Au, Av):
            vec.destroy()
        return gap

    def _ensure_adjoint_pc(self) -> None:
        """Collective: prepare the adjoint KSP's preconditioner after a primal set-up."""
        if self._adjoint_pc_ready:
            return
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

    def _tangent_solve(self) -> KrylovSolve:
        if self._tangent is None:
            solve = KrylovSolve(self.comm, self.prefix + "tangent_", "tangent",
                                **self._tangent_options)
            solve.set_from_options()
            solve.ksp.setPC(self.primal.ksp.getPC())
            self._tangent = solve
        A, P = self.primal.ksp.getOperators()
        self._tangent.ksp.setOperators(A, P)
        return self._tangent

    # -- solves ------------------------------------------------------------------------------------
    def solve(self, phase: str, bound: VecProblem, rhs: Any, x0: Any,
              settings: SolveSettings) -> tuple[SolveResult, Any]:
        if phase == "primal":
            solve, x, operator = self.primal, self._x, self.shell.A
        elif phase == "adjoint":
            self._ensure_adjoint_pc()
            solve, x, operator = self.adjoint, self._lam, None
        elif phase in ("second_adjoint", "output_adjoint"):
            self._ensure_adjoint_pc()
            solve, x, operator = self.adjoint, self.problem.x_layout.create_vec(), None
        else:
            solve, operator = self._tangent_solve(), self.shell.A
            x = self.problem.x_layout.create_vec()
        transposed = phase not in ("primal", "tangent")
        nullspace = bound.nullspace
        if nullspace is not None:  # the minimum-norm solution: b projected onto the range
            rhs = rhs.copy()
            nullspace.remove(rhs, transpose=not transposed)
        if x0 is not None:
            x0.copy(x)
            if nullspace is not None:
                nullspace.remove(x, transpose=transposed)
        # a lower limit than configured: the reuse rule's cap (the command line may raise it)
        cap = settings.maxiter if settings.maxiter < self.maxiter else None
        result = solve.solve(rhs, x, nonzero_guess=x0 is not None, operator=operator,
                             check_residual=self.check_residual, maxiter=cap,
                             rtol=settings.rtol, atol=settings.atol)
        self.guard.checkpoint(f"the {phase} solve")
        if nullspace is not None:
            rhs.destroy()
            nullspace.remove(x, transpose=transposed)
            result = replace(result, x=x.getArray(readonly=True).copy())
        return result, x

    def nullspace_measure(self, bound: VecProblem, v: Any, *, transpose: bool) -> float:
        nullspace = bound.nullspace
        return 0.0 if nullspace is None else nullspace.measure(v, transpose=transpose)

    def nullspace_split(self, bound: VecProblem, v: Any, *, transpose: bool) -> Any:
        return bound.nullspace.component(v, transpose=transpose)

    def nullspace_residuals(self, bound: VecProblem) -> list[tuple[str, int, float]]:
        rng = np.random.default_rng([2, self.guard.rank])
        probe = self.random_vector(rng)
        product = self.apply(bound, probe, transpose=False)
        scale = float(product.norm()) / float(probe.norm())
        out = []
        raw = bound.nullspace.raw
        checks = [(name, vecs, "transpose" in name) for name, vecs in raw.items()]
        if len(raw) == 1 and not bound.operator.symmetric_rmatvec:
            checks.append(("operator.nullspace (as the transpose's)",
                           raw["operator.nullspace"], True))
        for name, vecs, transpose in checks:
            for j, vec in enumerate(vecs):
                image = self.apply(bound, vec, transpose=transpose)
                size = scale * float(vec.norm())
                out.append((name, j, float(image.norm()) / size if size > 0 else 0.0))
                image.destroy()
        for vec in (probe, product):
            vec.destroy()
        return out

    def operator_vjp(self, bound: VecProblem, x: Any, lam: Any) -> Any:
        out = self.problem.theta_layout.create_vec()
        bound.operator_vjp(x, lam, out)
        self.guard.checkpoint("operator.vjp")
        return out

    # -- vectors and callbacks --------------------------------------------------------------------
    def rhs(self, bound: VecProblem) -> Any:
        bound.rhs(self._b)
        self.guard.checkpoint("the right-hand side")
        return self._b

    def objective_value(self, bound: VecProblem, x: Any) -> float:
        local = bound.objective_value(x)
        self.guard.checkpoint("the objective")
        return self._sum(local)

    def objective_grad_x(self, bound: VecProblem, x: Any) -> Any:
        bound.objective_grad_x(x, self._dj_dx)
        self.guard.checkpoint("the objective")
        return self._dj_dx

    def parameter_gradient(self, bound: VecProblem, x: Any, lam: Any) -> Any:
        gradient = self.problem.theta_layout.create_vec()
        bound.parameter_gradient(x, lam, gradient)
        self.guard.checkpoint("the gradient (vjp callbacks)")
        return gradient

    def tangent_rhs(self, bound: VecProblem, x: Any, dtheta: Any) -> Any:
        out = self.problem.x_layout.create_vec()
        bound.tangent_rhs(x, dtheta, out)
        self.guard.checkpoint("the tangent right-hand side (jvp callbacks)")
        return out

    def second_adjoint_rhs(self, bound: VecProblem, x: Any, xdot: Any, lam: Any, dtheta: Any,
                           *, gauss_newton: bool) -> Any:
        out = self.problem.x_layout.create_vec()
        bound.second_adjoint_rhs(x, xdot, lam, dtheta, out, gauss_newton=gauss_newton)
        self.guard.checkpoint("the second-order adjoint right-hand side")
        return out

    def hessian_action(self, bound: VecProblem, x: Any, xdot: Any, lam: Any, lamdot: Any,
                       dtheta: Any, *, gauss_newton: bool) -> Any:
        out = self.problem.theta_layout.create_vec()
        bound.hessian_action(x, xdot, lam, lamdot, dtheta, out, gauss_newton=gauss_newton)
        self.guard.checkpoint("the Hessian action (second-order callbacks)")
        return out

    def direct_derivative(self, bound: VecProblem, x: Any, dtheta: Any) -> float:
        local = bound.direct_derivative(x, dtheta)
        self.guard.checkpoint("the objective")
        return self._sum(local)

    def with_objective(self, bound: VecProblem, objective: Any) -> VecProblem:
        return bound.with_objective(objective)

    def with_source(self, bound: VecProblem, rhs: Any, objective: Any) -> VecProblem:
        return bound.with_source(rhs, objective)

    def unit_parameter(self, index: int) -> Any:
        layout = self.problem.theta_layout
        e = layout.create_vec()
        e.set(0.0)
        if layout.start <= index < layout.stop:
            e.setValue(index, 1.0)
        e.assemble()
        return e

    def local_parameters(self, v: Any) -> np.ndarray:
        return np.array(v.getArray(readonly=True))

    def local_columns(self, matrix: np.ndarray) -> np.ndarray:
        layout = self.problem.theta_layout
        return np.ascontiguousarray(matrix[:, layout.start:layout.stop])

    def theta_of(self, bound: VecProblem) -> np.ndarray:
        return bound.bound.theta

    def restore(self, bound: VecProblem) -> None:
        self._bound, self._last_theta = bound, bound.bound.theta.copy()
        self.shell.bind(bound)
        self._attach_nullspace(bound)

    def global_sum(self, value: float) -> float:
        return self._sum(value)

    def derivative_terms(self, bound: VecProblem, x: Any, lam: Any, dtheta: np.ndarray
                         ) -> tuple[float, float, float]:
        direction, work = (self.problem.theta_layout.create_vec() for _ in range(2))
        direction.setArray(dtheta)
        direct = bound.direct_derivative(x, direction)
        bound.operator_vjp(x, lam, work)
        operator = float(work.getArray(readonly=True) @ dtheta)
        bound.rhs_vjp(lam, work)
        rhs = float(work.getArray(readonly=True) @ dtheta)
        self.guard.checkpoint("the check of the gradient (vjp callbacks)")
        for vec in (direction, work):
            vec.destroy()
        return self._sum(direct), self._sum(operator), self._sum(rhs)

    def lagrangian_terms(self, bound: VecProblem, x: Any, lam: Any
                         ) -> tuple[float, float, float, float]:
        Ax = self.apply(bound, x, transpose=False)
        b = self.rhs(bound)
        J = self.objective_value(bound, x)
        terms = (J, float(lam.dot(Ax)), float(lam.dot(b)),
                 float(lam.norm()) * (float(Ax.norm()) + float(b.norm())))
        Ax.destroy()
        return terms

    def apply(self, bound: VecProblem, v: Any, *, transpose: bool) -> Any:
        out = v.duplicate()
        (bound.rmatvec if transpose else bound.matvec)(v, out)
        self.guard.checkpoint("operator.rmatvec" if transpose else "operator.matvec")
        return out

    def random_vector(self, rng: np.random.Generator) -> Any:
        vec = self.problem.x_layout.create_vec()
        vec.setArray(rng.standard_normal(vec.getLocalSize()))
        return vec

    def dot(self, a: Any, b: Any) -> float:
        return float(a.dot(b))

    def copy(self, v: Any) -> Any:
        return v.copy()

    def combine(self, a: Any, alpha: float, b: Any) -> Any:
        out = a.copy()
        out.axpy(alpha, b)
        return out

    def norm(self, v: Any) -> float:
        return float(v.norm())

    def is_finite(self, v: Any) -> bool:
        local = bool(np.isfinite(v.getArray(readonly=True)).all())
        return bool(self.comm.allreduce(int(local), op=mpi().MIN))

    def _sum(self, value: float) -> float:
        return float(self.comm.allreduce(float(value), op=mpi().SUM))

    # -- results ----------------------------------------------------------------------------------
    def gradient_result(self, **fields: Any) -> PetscGradientResult:
        extra = {**fields.pop("extra"), "adjoint_pc": self.adjoint_pc_mode,
                 "pc_type": self.pc_type, "nranks": self.problem.x_layout.nranks}
        return gradient_record(self.problem, extra=extra, **fields)

    def tangent_result(self, **fields: Any) -> PetscTangentResult:
        return tangent_record(**fields)

    def hessian_result(self, **fields: Any) -> PetscHessianResult:
        return hessian_record(self.problem, **fields)

    def destroy(self) -> None:
        """Free the PETSc objects (collective)."""
        for solve in (self.primal, self.adjoint, self._tangent):
            if solve is not None:
                solve.destroy()
        if self._hierarchy is not None:
            self._hierarchy.destroy()
        self.shell.destroy()
        self.pmat.destroy()
        if self._constant_nullspace is not None:
            self._constant_nullspace.destroy()
        for vec in (self._theta, self._b, self._x, self._dj_dx, self._lam):
            vec.destroy()

"""The serial backend: numpy vectors, the library's Krylov methods, preconditioners on scipy.

Mechanics only (see :mod:`krylov_adjoint.adjoint.backend`): the policy is the engine's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from .._checks import callback_failure, readonly
from ..adjoint.backend import SolveSettings
from ..adjoint.result import GradientResult, HessianResult, TangentResult
from ..krylov._callbacks import guarded
from ..krylov.block_cg import batched_cg, block_cg
from ..krylov.recycling import RecycledSpace
from ..krylov.result import SolveResult
from ..krylov.solve import RECYCLING_METHODS, solve
from ..precond.amg import AMGPreconditioner
from ..precond.base import Preconditioner, TransposedPreconditioner
from ..precond.factory import resolve_preconditioner
from ..precond.projected import ProjectedPreconditioner
from ..problem.block import apply_block, block_vjp, checked_block
from ..problem.bound import BoundProblem
from ..problem.nullspace import nullspace_residuals
from ..problem.problem import AdjointProblem, as_assembled_matrix

__all__ = ["SerialBackend"]

#: How each phase applies the operator and the preconditioner, and names them in errors.
#: The solves with Aᵀ and Mᵀ.
TRANSPOSED_PHASES = ("adjoint", "second_adjoint", "output_adjoint")

_PRECONDITIONER_LABELS = {"primal": "preconditioner.apply", "tangent": "preconditioner.apply",
                          "adjoint": "preconditioner.apply_transpose",
                          "second_adjoint": "preconditioner.apply_transpose",
                          "output_adjoint": "preconditioner.apply_transpose"}


class SerialBackend:
    """The mechanics of a serial :class:`~krylov_adjoint.AdjointProblem`.

    Recycled spaces (:mod:`krylov_adjoint.krylov.recycling`) are kept here by the name the
    engine gives them (``SolveSettings.space``). A space remembers the operator and the
    preconditioner it was made consistent with; at a new θ or after a new set-up of the
    preconditioner it is re-orthogonalised against the new operator before use (k operator
    products), not dropped. A solve that only reads a space gets a copy.

    Parameters
    ----------
    problem : AdjointProblem
    preconditioner : str, Preconditioner, LinearOperator, MultilevelSolver, callable or None
        As in :class:`~krylov_adjoint.AdjointSolver`; resolved and checked at once by
        :func:`~krylov_adjoint.precond.resolve_preconditioner`.
    options : dict, optional
        Keyword arguments of the preconditioner.
    """

    def __init__(self, problem: AdjointProblem, preconditioner: Any = "auto",
                 options: dict[str, Any] | None = None) -> None:
        if not isinstance(problem, AdjointProblem):
            raise TypeError(f"problem must be an AdjointProblem, got {type(problem).__name__}")
        self.problem = problem
        self.n = problem.n
        self.structure = problem.structure
        self.dtype = problem.dtype
        self.source = resolve_preconditioner(preconditioner, options, n=problem.n,
                                             has_assembled=problem.operator.has_assembled)
        self.M: Preconditioner | None = self.source.fixed
        self.preconditioner_fixed = self.M is not None
        self.preconditioner_name = self.source.name
        self.preconditioner_refresh_per_theta = self.source.refresh_per_theta
        # what make_preconditioner accepts: the kind or factory set up here, or the fixed one
        self.spec = self.source.kind if self.M is None else self.M
        self.options = dict(self.source.options)
        self._assembled: Any = None
        self._set_up_near_nullspace: np.ndarray | None = None
        self._last: BoundProblem | None = None
        self.spaces: dict[str, RecycledSpace] = {}
        #: The methods that can recycle a Krylov space here.
        self.recycling_methods = tuple(RECYCLING_METHODS)
        #: Many sources: block Krylov and block products (:meth:`solve_block`).
        self.supports_blocks = True

    # -- θ and the preconditioner ---------------------------------------------------------------
    def bind(self, theta: Any) -> tuple[BoundProblem, bool]:
        bound = self.problem.bind(theta)
        new = bound is not self._last
        self._last = bound
        return bound, new

    def check_direction(self, dtheta: Any) -> np.ndarray:
        return self.problem.check_theta(dtheta, "dtheta")

    def check_state(self, value: Any, name: str) -> np.ndarray:
        return self.problem.check_state(value, name)

    def equal(self, a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.array_equal(a, b))

    def set_up_preconditioner(self, bound: BoundProblem, *, keep_interpolation: bool) -> bool:
        # A has the problem's shape and field, as the kept AMG (as_assembled_matrix checks)
        A = as_assembled_matrix(bound.assemble(), self.n, self.dtype)
        near_nullspace = self._near_nullspace(bound)
        kept = (keep_interpolation and self.can_keep_interpolation()
                and _same_array(near_nullspace, self._set_up_near_nullspace))
        if kept:
            assert isinstance(self.M, AMGPreconditioner)
            self.M = self.M.refreshed(A)
        else:
            self.M = self.source.build(A, near_nullspace=near_nullspace)
        self._set_up_near_nullspace = near_nullspace
        self._assembled = A
        return kept

    def can_keep_interpolation(self) -> bool:
        # only the library's own AMG: a user's factory is always called
        return self.source.kind == "amg" and isinstance(self.M, AMGPreconditioner)

    def _near_nullspace(self, bound: BoundProblem) -> np.ndarray | None:
        """The declared nullspace, for smoothed-aggregation AMG (pyamg's B) unless the
        options give one: the coarse spaces then represent it exactly."""
        nullspace = bound.nullspace()
        if (nullspace is None or self.source.kind != "amg" or "near_nullspace" in self.options
                or self.options.get("method", "sa") != "sa"):
            return None
        return nullspace.Z

    def preconditioner_is_symmetric(self) -> bool | None:
        return getattr(self.M, "is_symmetric", None)

    def assembled_symmetry_gap(self) -> float:
        from .._transpose import transpose_mismatch

        A = self._assembled
        if A is None:
            return 0.0
        rng = np.random.default_rng(1)
        u, v = self.random_vector(rng), self.random_vector(rng)
        Au, Av = A @ u, A @ v
        # Hermitian (vᴴAu = conj(uᴴAv)) when declared spd, else symmetric (vᵀAu = uᵀAv)
        conj = np.conj if self.dtype.kind == "c" and self.structure.name == "SPD" else _same
        return transpose_mismatch(complex(conj(Au) @ v), complex(conj(u) @ Av),
                                  *(float(np.linalg.norm(w)) for w in (Au, v, u, Av)))

    # -- solves ------------------------------------------------------------------------------------
    def solve(self, phase: str, bound: BoundProblem, rhs: np.ndarray, x0: Any,
              settings: SolveSettings) -> tuple[SolveResult, np.ndarray]:
        M: Any = self.M
        transposed = phase in TRANSPOSED_PHASES
        nullspace = bound.nullspace()
        if nullspace is not None:  # the minimum-norm solution (see precond.projected)
            M = ProjectedPreconditioner(M, nullspace.Z, nullspace.W)
            rhs = nullspace.remove(rhs, transpose=not transposed)
            if x0 is not None:
                x0 = nullspace.remove(x0, transpose=transposed)
        if transposed:
            operator = spla.LinearOperator((self.n, self.n), matvec=bound.rmatvec,
                                           dtype=self.dtype)
            M = TransposedPreconditioner(M) if M is not None else None
            label = bound.operator.rmatvec_name
        else:
            operator = spla.LinearOperator((self.n, self.n), matvec=bound.matvec,
                                           dtype=self.dtype)
            label = "operator.matvec"
        space = self._space(settings, bound, operator)
        result = solve(operator, rhs, method=settings.method, M=M, x0=x0, rtol=settings.rtol,
                       atol=settings.atol, maxiter=settings.maxiter, restart=settings.restart,
                       monitor=settings.monitor, labels=(label, _PRECONDITIONER_LABELS[phase]),
                       phase=phase, recycle=space)
        if nullspace is None:
            return result, result.x
        x = nullspace.remove(result.x, transpose=transposed)  # the round-off along Z
        return replace(result, x=x), x

    def nullspace_measure(self, bound: BoundProblem, v: np.ndarray, *, transpose: bool
                          ) -> float:
        nullspace = bound.nullspace()
        return 0.0 if nullspace is None else nullspace.measure(v, transpose=transpose)

    def nullspace_split(self, bound: BoundProblem, v: np.ndarray, *, transpose: bool
                        ) -> np.ndarray:
        nullspace = bound.nullspace()
        assert nullspace is not None
        return nullspace.component(v, transpose=transpose)

    def nullspace_residuals(self, bound: BoundProblem) -> list[tuple[str, int, float]]:
        return nullspace_residuals(bound, self.random_vector(np.random.default_rng(2)))

    def _space(self, settings: SolveSettings, bound: BoundProblem, operator: Any
               ) -> RecycledSpace | None:
        """The recycled space of this solve, consistent with the current A and M (a copy
        when the solve only reads it); None without recycling."""
        if not settings.recycle:
            return None
        space = self.spaces.get(settings.space)
        if space is None or space.k != settings.recycle:
            space = self.spaces[settings.space] = RecycledSpace(settings.recycle, self.n)
        key = (bound, self.M)
        if space.key is None or any(a is not b for a, b in zip(space.key, key, strict=True)):
            space.refresh(operator.matvec, key)
        return space if settings.update_space else space.copy()

    def solve_block(self, phase: str, bound: BoundProblem, B: np.ndarray, X0: Any,
                    settings: SolveSettings, method: str) -> list[SolveResult]:
        """CG on the columns of the (N, S) block B (primal: A and M; adjoint: Aᵀ and Mᵀ),
        ``"batched_cg"`` (in lockstep) or ``"block_cg"`` (one block Krylov space); one result
        per column. The operator takes the block in one call when declared ``block=True``,
        the preconditioner when it ``accepts_blocks`` (AMG)."""
        transposed = phase in TRANSPOSED_PHASES
        M = self.M
        if M is not None and transposed:
            M = TransposedPreconditioner(M)
        label = bound.operator.rmatvec_name if transposed else "operator.matvec"
        pc_label = _PRECONDITIONER_LABELS[phase]

        apply = None if M is None else guarded(M.apply, pc_label, self.n, "M @ r")
        blocks = self.preconditioner_takes_blocks()

        def precond(R: np.ndarray) -> np.ndarray:
            if apply is None:
                return R.copy()
            if blocks:
                try:
                    out = M.apply(readonly(R))
                except Exception as exc:
                    raise callback_failure(pc_label, exc, "M @ R") from exc
                return checked_block(pc_label, out, R.shape)
            columns = np.asfortranarray(R)  # contiguous columns
            return np.column_stack([apply(columns[:, j]) for j in range(R.shape[1])])

        solver = {"batched_cg": batched_cg, "block_cg": block_cg}[method]
        return solver(lambda V: apply_block(bound, V, transpose=transposed), B, X0,
                        precond=precond, rtol=settings.rtol, atol=settings.atol,
                        maxiter=settings.maxiter, monitor=settings.monitor,
                        labels=(label, pc_label), phase=phase)

    def preconditioner_takes_blocks(self) -> bool:
        """True when the preconditioner applies an (N, k) block at once (none, or e.g. AMG
        with polynomial smoothing): then lockstep solves on blocks pay."""
        return self.M is None or bool(getattr(self.M, "accepts_blocks", False))

    def block_parameter_gradient(self, views: list[BoundProblem], X: np.ndarray,
                                 L: np.ndarray) -> np.ndarray:
        """``Σₛ dJₛ/dθ`` for the sources ``views`` (one bound problem per source) with the
        states X and adjoints Λ as (N, S) blocks: the operator's VJP once on the blocks
        (when declared ``block=True``), the right-hand sides' and objectives' per source."""
        zero = np.zeros(self.problem.n_params)
        total = np.zeros(self.problem.n_params)
        for j, view in enumerate(views):
            total += view.parameter_gradient(X[:, j], L[:, j], operator_term=zero)
        term = block_vjp(views[0], X, L)
        return total if term is None else total - term

    # -- vectors and callbacks ---------------------------------------------------------------------
    def rhs(self, bound: BoundProblem) -> np.ndarray:
        return bound.b()

    def objective_value(self, bound: BoundProblem, x: np.ndarray) -> float:
        return bound.objective_value(x)

    def objective_grad_x(self, bound: BoundProblem, x: np.ndarray) -> np.ndarray:
        return bound.objective_grad_x(x)

    def parameter_gradient(self, bound: BoundProblem, x: np.ndarray, lam: np.ndarray
                           ) -> np.ndarray:
        return bound.parameter_gradient(x, lam)

    def operator_vjp(self, bound: BoundProblem, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        term = bound.operator_vjp(x, lam)
        return np.zeros(self.problem.n_params) if term is None else term

    def tangent_rhs(self, bound: BoundProblem, x: np.ndarray, dtheta: np.ndarray
                    ) -> np.ndarray:
        return bound.tangent_rhs(x, dtheta)

    def second_adjoint_rhs(self, bound: BoundProblem, x: np.ndarray, xdot: np.ndarray,
                           lam: np.ndarray, dtheta: np.ndarray, *, gauss_newton: bool
                           ) -> np.ndarray:
        return bound.second_adjoint_rhs(x, xdot, lam, dtheta, gauss_newton=gauss_newton)

    def hessian_action(self, bound: BoundProblem, x: np.ndarray, xdot: np.ndarray,
                       lam: np.ndarray, lamdot: np.ndarray, dtheta: np.ndarray, *,
                       gauss_newton: bool) -> np.ndarray:
        return bound.hessian_action(x, xdot, lam, lamdot, dtheta, gauss_newton=gauss_newton)

    def direct_derivative(self, bound: BoundProblem, x: np.ndarray, dtheta: np.ndarray
                          ) -> float:
        direct = bound.objective_grad_theta(x)
        return 0.0 if direct is None else float(direct @ dtheta)

    def with_objective(self, bound: BoundProblem, objective: Any) -> BoundProblem:
        return bound.with_objective(objective)

    def with_source(self, bound: BoundProblem, rhs: Any, objective: Any) -> BoundProblem:
        return bound.with_source(rhs, objective)

    def unit_parameter(self, index: int) -> np.ndarray:
        e = np.zeros(self.problem.n_params)
        e[index] = 1.0
        return e

    def local_parameters(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v)

    def local_columns(self, matrix: np.ndarray) -> np.ndarray:
        return matrix

    def theta_of(self, bound: BoundProblem) -> np.ndarray:
        return bound.theta

    def restore(self, bound: BoundProblem) -> None:
        self.problem._bound = self._last = bound

    def global_sum(self, value: float) -> float:
        return float(value)

    def derivative_terms(self, bound: BoundProblem, x: np.ndarray, lam: np.ndarray,
                         dtheta: np.ndarray) -> tuple[float, float, float]:
        terms = (bound.objective_grad_theta(x), bound.operator_vjp(x, lam), bound.rhs_vjp(lam))
        return tuple(0.0 if t is None else float(t @ dtheta) for t in terms)  # type: ignore

    def lagrangian_terms(self, bound: BoundProblem, x: np.ndarray, lam: np.ndarray
                         ) -> tuple[float, float, float, float]:
        Ax, b = bound.matvec(x, check_finite=True), bound.b()
        return (bound.objective_value(x), self.dot(lam, Ax), self.dot(lam, b),
                float(np.linalg.norm(lam) * (np.linalg.norm(Ax) + np.linalg.norm(b))))

    def apply(self, bound: BoundProblem, v: np.ndarray, *, transpose: bool) -> np.ndarray:
        return bound.rmatvec(v) if transpose else bound.matvec(v)

    def random_vector(self, rng: np.random.Generator) -> np.ndarray:
        if self.dtype.kind == "c":
            return rng.standard_normal(self.n) + 1j * rng.standard_normal(self.n)
        return rng.standard_normal(self.n)

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        """The real inner product Re(aᴴb) (aᵀb for a real system): the one of ℂᴺ as ℝ²ᴺ,
        for which Aᴴ is the adjoint of A and Re(gᴴẋ) the derivative of J."""
        return float(np.vdot(a, b).real)

    def copy(self, v: np.ndarray) -> np.ndarray:
        return np.array(v, copy=True)

    def combine(self, a: np.ndarray, alpha: float, b: np.ndarray) -> np.ndarray:
        return a + alpha * b

    def norm(self, v: np.ndarray) -> float:
        return float(np.linalg.norm(v))

    def is_finite(self, v: np.ndarray) -> bool:
        return bool(np.isfinite(v).all())

    def gradient_result(self, **fields: Any) -> GradientResult:
        return GradientResult(**fields)

    def tangent_result(self, **fields: Any) -> TangentResult:
        return TangentResult(**fields)

    def hessian_result(self, **fields: Any) -> HessianResult:
        return HessianResult(**fields)


def _same(v: np.ndarray) -> np.ndarray:
    return v


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two optional arrays are both None or equal (a near-nullspace kept)."""
    return a is b or (a is not None and b is not None and bool(np.array_equal(a, b)))

"""The serial backend: numpy vectors, the library's Krylov methods, preconditioners on scipy.

Mechanics only (see :mod:`krylov_adjoint.adjoint.backend`): the policy is the engine's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from ..adjoint.backend import SolveSettings
from ..adjoint.result import GradientResult, HessianResult, TangentResult
from ..krylov.result import SolveResult
from ..krylov.solve import solve
from ..precond.base import Preconditioner, TransposedPreconditioner
from ..precond.factory import resolve_preconditioner
from ..problem.bound import BoundProblem
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
        self._last: BoundProblem | None = None

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

    def set_up_preconditioner(self, bound: BoundProblem) -> None:
        A = as_assembled_matrix(bound.assemble(), self.n)
        self.M = self.source.build(A)
        self._assembled = A

    def preconditioner_is_symmetric(self) -> bool | None:
        return getattr(self.M, "is_symmetric", None)

    def assembled_symmetry_gap(self) -> float:
        from .._transpose import transpose_mismatch

        A = self._assembled
        if A is None:
            return 0.0
        rng = np.random.default_rng(1)
        u, v = rng.standard_normal(self.n), rng.standard_normal(self.n)
        Au, Av = A @ u, A @ v
        return transpose_mismatch(float(Au @ v), float(u @ Av),
                                  *(float(np.linalg.norm(w)) for w in (Au, v, u, Av)))

    # -- solves ------------------------------------------------------------------------------------
    def solve(self, phase: str, bound: BoundProblem, rhs: np.ndarray, x0: Any,
              settings: SolveSettings) -> tuple[SolveResult, np.ndarray]:
        M = self.M
        if phase in TRANSPOSED_PHASES:
            operator = spla.LinearOperator((self.n, self.n), matvec=bound.rmatvec,
                                           dtype=np.float64)
            M = TransposedPreconditioner(M) if M is not None else None
            label = bound.operator.rmatvec_name
        else:
            operator = spla.LinearOperator((self.n, self.n), matvec=bound.matvec,
                                           dtype=np.float64)
            label = "operator.matvec"
        result = solve(operator, rhs, method=settings.method, M=M, x0=x0, rtol=settings.rtol,
                       atol=settings.atol, maxiter=settings.maxiter, restart=settings.restart,
                       monitor=settings.monitor, labels=(label, _PRECONDITIONER_LABELS[phase]),
                       phase=phase)
        return result, result.x

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
        return (bound.objective_value(x), float(lam @ Ax), float(lam @ b),
                float(np.linalg.norm(lam) * (np.linalg.norm(Ax) + np.linalg.norm(b))))

    def apply(self, bound: BoundProblem, v: np.ndarray, *, transpose: bool) -> np.ndarray:
        return bound.rmatvec(v) if transpose else bound.matvec(v)

    def random_vector(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(self.n)

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b)

    def copy(self, v: np.ndarray) -> np.ndarray:
        return np.array(v, copy=True)

    def is_finite(self, v: np.ndarray) -> bool:
        return bool(np.isfinite(v).all())

    def gradient_result(self, **fields: Any) -> GradientResult:
        return GradientResult(**fields)

    def tangent_result(self, **fields: Any) -> TangentResult:
        return TangentResult(**fields)

    def hessian_result(self, **fields: Any) -> HessianResult:
        return HessianResult(**fields)

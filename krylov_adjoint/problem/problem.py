"""An adjoint problem: operator, right-hand side and objective, with validated callbacks."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import (
    as_real_scalar,
    as_real_vector,
    as_size,
    checked_call,
    readonly,
    refuse_complex,
)
from ..errors import CallbackError, KrylovAdjointError
from .objective import Objective
from .operator import ParametricOperator
from .rhs import RightHandSide
from .structure import Structure

__all__ = ["AdjointProblem"]


class AdjointProblem:
    """``A(θ) x = b(θ)`` and an objective ``J(x, θ)``, θ ∈ Rᴾ.

    Every callback output passes through this class, which checks its shape, dtype and
    finiteness and names the callback in any error. Callbacks receive read-only arrays.

    Parameters
    ----------
    operator : ParametricOperator, scipy.sparse matrix or LinearOperator
        A(θ). A matrix or ``LinearOperator`` is taken as independent of θ.
    rhs : RightHandSide or array
        b(θ). An array is taken as independent of θ.
    objective : Objective
        J(x, θ) with its partial derivatives.
    n_params : int
        P, the length of θ.
    structure : {"general", "symmetric", "spd"}, optional
        Only used when ``operator`` is a matrix or ``LinearOperator``.

    Examples
    --------
    ``A(θ) = diag(θ)``, ``b = 1``, ``J = sum(x)``, so ``x = 1/θ`` and ``dJ/dθ = -1/θ²``:

    >>> import numpy as np
    >>> from krylov_adjoint import ParametricOperator, LinearFunctional
    >>> op = ParametricOperator(lambda th, x: th * x, n=2, structure="spd",
    ...                         vjp=lambda th, x, lam: lam * x)
    >>> problem = AdjointProblem(op, np.ones(2), LinearFunctional(np.ones(2)), n_params=2)
    >>> problem.n, problem.n_params
    (2, 2)
    """

    def __init__(self, operator: Any, rhs: Any, objective: Objective, *, n_params: int,
                 structure: str | Structure | None = None) -> None:
        if not isinstance(operator, ParametricOperator):
            refuse_complex(operator, "operator")
            operator = ParametricOperator.constant(operator, structure=structure or "general")
        elif structure is not None and Structure.coerce(structure) is not operator.structure:
            raise ValueError("structure is declared on the ParametricOperator; do not pass "
                             "another one to AdjointProblem")
        if not isinstance(rhs, RightHandSide):
            rhs = RightHandSide(rhs)
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be an Objective, got {type(objective).__name__}")
        n_params = as_size(n_params, "n_params")
        self.operator = operator
        self.rhs = rhs
        self.objective = objective
        self.n = operator.n
        self.n_params = n_params
        if not rhs.depends_on_theta:
            as_real_vector(rhs.value(None), "rhs", self.n, callback=False)

    @property
    def structure(self) -> Structure:
        """The declared structure of A(θ)."""
        return self.operator.structure

    # -- inputs ------------------------------------------------------------------
    def check_theta(self, theta: Any, name: str = "theta") -> np.ndarray:
        """θ as a read-only float64 copy of length P, or a clear error."""
        arr = as_real_vector(theta, name, self.n_params, callback=False)
        arr = np.array(arr, dtype=np.float64, copy=True)
        arr.flags.writeable = False
        return arr

    def check_state(self, x: Any, name: str) -> np.ndarray:
        """A vector of length N (x, λ, an initial guess), or a clear error."""
        return as_real_vector(x, name, self.n, callback=False)

    # -- validated callbacks ----------------------------------------------------
    def matvec(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """A(θ) x, checked (shape, dtype, finiteness)."""
        return checked_call(self.operator.matvec, "operator.matvec", self.n, theta, readonly(x))

    def rmatvec(self, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A(θ)ᵀ y, checked."""
        return checked_call(self.operator.rmatvec, self.operator.rmatvec_name, self.n, theta,
                            readonly(y))

    def linear_operator(self, theta: np.ndarray) -> spla.LinearOperator:
        """A(θ) as a scipy ``LinearOperator`` whose ``.T`` applies A(θ)ᵀ.

        Shapes and dtypes are checked on every call; finiteness is checked by the Krylov
        methods on each new residual, at no extra cost.
        """
        n = self.n
        op = self.operator

        def mv(x: np.ndarray) -> np.ndarray:
            return _fast_check(_guarded(op.matvec, "operator.matvec", theta, readonly(x)),
                               "operator.matvec", n)

        rmatvec_name = op.rmatvec_name

        def rmv(y: np.ndarray) -> np.ndarray:
            return _fast_check(_guarded(op.rmatvec, rmatvec_name, theta, readonly(y)),
                               rmatvec_name, n)

        return spla.LinearOperator((n, n), matvec=mv, rmatvec=rmv, dtype=np.float64)

    def b(self, theta: np.ndarray) -> np.ndarray:
        """b(θ), checked."""
        if not self.rhs.depends_on_theta:
            return self.rhs.value(theta)
        return checked_call(self.rhs.value, "rhs", self.n, theta)

    def assemble(self, theta: np.ndarray) -> sp.csr_matrix:
        """The assembled A(θ) (or its approximation) as CSR float64, checked."""
        A = _guarded(self.operator.assemble, "operator.assemble", theta)
        if isinstance(A, np.ndarray):
            A = sp.csr_matrix(A)
        if not sp.issparse(A):
            raise CallbackError("operator.assemble",
                                f"expected a scipy.sparse matrix, got {type(A).__name__}")
        if A.shape != (self.n, self.n):
            raise CallbackError("operator.assemble",
                                f"expected shape ({self.n}, {self.n}), got {A.shape}")
        A = sp.csr_matrix(A, dtype=np.float64)
        if not np.isfinite(A.data).all():
            raise CallbackError("operator.assemble", "the matrix has non-finite entries")
        return A

    def objective_value(self, x: np.ndarray, theta: np.ndarray) -> float:
        """J(x, θ), checked."""
        value = _guarded(self.objective.value, "objective.value", readonly(x), theta)
        return as_real_scalar(value, "objective.value")

    def objective_grad_x(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂J/∂x, checked."""
        return checked_call(self.objective.grad_x, "objective.grad_x", self.n, readonly(x), theta)

    def objective_grad_theta(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray | None:
        """∂J/∂θ, checked; None when J does not depend on θ."""
        out = _guarded(self.objective.grad_theta, "objective.grad_theta", readonly(x), theta)
        return None if out is None else as_real_vector(out, "objective.grad_theta",
                                                       self.n_params)

    def operator_vjp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
        """λᵀ(∂A/∂θ)x, checked; None for an operator independent of θ."""
        if not self.operator.depends_on_theta:
            return None
        out = _guarded(self.operator.vjp, "operator.vjp", theta, readonly(x), readonly(lam))
        return as_real_vector(out, "operator.vjp", self.n_params)

    def rhs_vjp(self, theta: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
        """λᵀ∂b/∂θ, checked; None for a fixed b."""
        if not self.rhs.depends_on_theta:
            return None
        out = _guarded(self.rhs.vjp, "rhs.vjp", theta, readonly(lam))
        return as_real_vector(out, "rhs.vjp", self.n_params)

    def operator_jvp(self, theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray
                     ) -> np.ndarray | None:
        """(∂A/∂θ·dθ)x, checked; None for a constant operator."""
        if not self.operator.depends_on_theta:
            return None
        out = _guarded(self.operator.jvp, "operator.jvp", theta, readonly(x), readonly(dtheta))
        return as_real_vector(out, "operator.jvp", self.n)

    def rhs_jvp(self, theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        """(∂b/∂θ)dθ, checked; None for a fixed b."""
        if not self.rhs.depends_on_theta:
            return None
        out = _guarded(self.rhs.jvp, "rhs.jvp", theta, readonly(dtheta))
        return as_real_vector(out, "rhs.jvp", self.n)

    def parameter_gradient(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray
                           ) -> np.ndarray:
        """dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ), given the primal x and the adjoint λ."""
        grad = np.zeros(self.n_params)
        direct = self.objective_grad_theta(x, theta)
        if direct is not None:
            grad += direct
        op_term = self.operator_vjp(theta, x, lam)
        if op_term is not None:
            grad -= op_term
        rhs_term = self.rhs_vjp(theta, lam)
        if rhs_term is not None:
            grad += rhs_term
        return grad


def _guarded(callback: Any, name: str, *args: Any) -> Any:
    try:
        return callback(*args)
    except KrylovAdjointError:
        raise
    except Exception as exc:
        raise CallbackError(name, f"raised {type(exc).__name__}: {exc}") from exc


def _fast_check(y: Any, name: str, n: int) -> np.ndarray:
    """Shape and dtype check of a matvec output, without a pass over the data."""
    if type(y) is not np.ndarray or y.shape != (n,) or y.dtype != np.float64:
        return as_real_vector(y, name, n, check_finite=False)
    return y

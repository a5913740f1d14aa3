"""An adjoint problem: operator, right-hand side and objective, with validated callbacks."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import (
    as_real_vector,
    as_size,
    as_vector,
    refuse_complex,
    refuse_complex_parameters,
)
from ..errors import CallbackError
from .bound import BoundProblem, RaiseNow
from .objective import Objective
from .operator import ParametricOperator
from .rhs import RightHandSide
from .structure import Structure

__all__ = ["AdjointProblem"]


class AdjointProblem:
    """``A(θ) x = b(θ)`` and an objective ``J(x, θ)``, θ ∈ Rᴾ.

    Every callback output passes through the problem bound at θ (:meth:`bind`), which checks
    its shape, dtype and finiteness and names the callback in any error. Callbacks receive
    read-only arrays.

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
            rhs = RightHandSide(rhs, dtype=operator.dtype)
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be an Objective, got {type(objective).__name__}")
        n_params = as_size(n_params, "n_params")
        self.operator = operator
        self.rhs = rhs
        self.objective = objective
        self.n = operator.n
        self.n_params = n_params
        #: float64, or complex128 for a complex system (declared on the operator).
        self.dtype = operator.dtype
        if not rhs.depends_on_theta:
            as_vector(rhs.value(None), "rhs", self.n, dtype=self.dtype, callback=False)
        self._bound: BoundProblem | None = None

    @property
    def structure(self) -> Structure:
        """The declared structure of A(θ)."""
        return self.operator.structure

    # -- inputs ------------------------------------------------------------------
    def check_theta(self, theta: Any, name: str = "theta") -> np.ndarray:
        """θ as a read-only float64 copy of length P, or a clear error (θ is real, also for a
        complex system: a complex parameter is two real ones)."""
        refuse_complex_parameters(theta, name)
        arr = as_real_vector(theta, name, self.n_params, callback=False)
        arr = np.array(arr, dtype=np.float64, copy=True)
        arr.flags.writeable = False
        return arr

    def check_state(self, x: Any, name: str) -> np.ndarray:
        """A vector of length N (x, λ, an initial guess), or a clear error."""
        return as_vector(x, name, self.n, dtype=self.dtype, callback=False)

    @property
    def n_local(self) -> int:
        """N: the serial problem holds all of x."""
        return self.n

    @property
    def params_local(self) -> int:
        """P: the serial problem holds all of θ."""
        return self.n_params

    def bind(self, theta: Any) -> BoundProblem:
        """The problem at θ: checked callbacks (see :class:`~.bound.BoundProblem`).

        The operator's ``prepare(θ)`` runs when θ differs from the last bound one; binding
        the same values again returns the same object.

        Examples
        --------
        >>> import numpy as np
        >>> from krylov_adjoint import ParametricOperator, LinearFunctional
        >>> op = ParametricOperator(lambda th, x: th * x, n=2, structure="spd",
        ...                         vjp=lambda th, x, lam: lam * x)
        >>> problem = AdjointProblem(op, np.ones(2), LinearFunctional(np.ones(2)), n_params=2)
        >>> problem.bind(np.array([2.0, 4.0])).matvec(np.ones(2))
        array([2., 4.])
        """
        theta = self.check_theta(theta)
        last = self._bound
        if last is not None and np.array_equal(last.theta, theta):
            return last
        self._bound = BoundProblem(self, theta, RaiseNow())
        return self._bound

    # -- validated callbacks at one θ (shortcuts for the bound problem) ----------------
    def matvec(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """A(θ) x, checked."""
        return self.bind(theta).matvec(x, check_finite=True)

    def rmatvec(self, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A(θ)ᵀ y, checked."""
        return self.bind(theta).rmatvec(y, check_finite=True)

    def linear_operator(self, theta: np.ndarray) -> spla.LinearOperator:
        """A(θ) as a scipy ``LinearOperator`` whose ``.T`` applies A(θ)ᵀ (checked products)."""
        bound = self.bind(theta)
        return spla.LinearOperator((self.n, self.n), matvec=bound.matvec,
                                   rmatvec=bound.rmatvec, dtype=self.dtype)

    def b(self, theta: np.ndarray) -> np.ndarray:
        """b(θ), checked."""
        return self.bind(theta).b()

    def assemble(self, theta: np.ndarray) -> sp.csr_matrix:
        """The assembled A(θ) (or its approximation) as CSR float64 (complex128 for a complex
        system), checked."""
        return as_assembled_matrix(self.bind(theta).assemble(), self.n, self.dtype)

    def objective_value(self, x: np.ndarray, theta: np.ndarray) -> float:
        """J(x, θ), checked."""
        return self.bind(theta).objective_value(x)

    def objective_grad_x(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂J/∂x, checked."""
        return self.bind(theta).objective_grad_x(x)

    def objective_grad_theta(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray | None:
        """∂J/∂θ, checked; None when J does not depend on θ."""
        return self.bind(theta).objective_grad_theta(x)

    def operator_vjp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
        """λᵀ(∂A/∂θ)x, checked; None for an operator independent of θ."""
        return self.bind(theta).operator_vjp(x, lam)

    def rhs_vjp(self, theta: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
        """λᵀ∂b/∂θ, checked; None for a fixed b."""
        return self.bind(theta).rhs_vjp(lam)

    def operator_jvp(self, theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray
                     ) -> np.ndarray | None:
        """(∂A/∂θ·dθ)x, checked; None for a constant operator."""
        return self.bind(theta).operator_jvp(x, self.check_theta(dtheta, "dtheta"))

    def rhs_jvp(self, theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        """(∂b/∂θ)dθ, checked; None for a fixed b."""
        return self.bind(theta).rhs_jvp(self.check_theta(dtheta, "dtheta"))

    def parameter_gradient(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray
                           ) -> np.ndarray:
        """dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ), given the primal x and the adjoint λ."""
        return self.bind(theta).parameter_gradient(x, lam)


def as_assembled_matrix(A: Any, n: int, dtype: Any = np.float64) -> sp.csr_matrix:
    """The output of ``operator.assemble`` as CSR of shape (n, n) (float64, or complex128 for
    a complex system), or a clear error."""
    if isinstance(A, np.ndarray):
        A = sp.csr_matrix(A)
    if not sp.issparse(A):
        raise CallbackError("operator.assemble",
                            f"expected a scipy.sparse matrix, got {type(A).__name__}")
    if A.shape != (n, n):
        raise CallbackError("operator.assemble", f"expected shape ({n}, {n}), got {A.shape}")
    field = np.dtype(dtype)
    if A.dtype.kind == "c" and field.kind != "c":
        raise CallbackError("operator.assemble", "expected a real matrix, got dtype "
                            f"{A.dtype}: complex values in a real problem (declare a complex "
                            "system with dtype=complex on the operator)")
    A = sp.csr_matrix(A, dtype=field)
    if not np.isfinite(A.data).all():
        raise CallbackError("operator.assemble", "the matrix has non-finite entries")
    return A

"""What the gradient engine needs from a backend: the mechanics, none of the policy.

The engine (:mod:`.engine`) decides what to solve, when to set the preconditioner up, where
to start from, what to check and what to raise. A backend supplies vectors and the
operations on them: the serial backend on numpy arrays with the library's Krylov methods
(:mod:`krylov_adjoint.backends.serial`), the PETSc backend on distributed Vecs with KSP
(:mod:`krylov_adjoint.backends.petsc`). Vectors are opaque to the engine; it only hands them
back to the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..krylov.result import SolveResult
from ..krylov.stopping import Monitor
from ..problem.bound import BoundProblem
from ..problem.structure import Structure
from .result import GradientResult, HessianResult, TangentResult

__all__ = ["Backend", "SolveSettings"]


@dataclass(frozen=True)
class SolveSettings:
    """The stopping rule and Krylov settings of one solve, as the engine passes them.

    ``recycle`` is the number of recycled vectors (0: none); ``space`` names the recycled
    space the solve uses (``"primal"`` or ``"adjoint"``, shared by the solves that name it)
    and ``update_space`` whether the solve may renew it (False: it is only read).
    """

    method: str
    rtol: float
    atol: float
    maxiter: int
    restart: int
    monitor: Monitor | None
    recycle: int = 0
    space: str = ""
    update_space: bool = False


class Backend(Protocol):
    """The mechanics of one backend (see the module docstring).

    Phases are ``"primal"`` (A x = b with M), ``"adjoint"`` (Aᵀ λ = ∂J/∂x with Mᵀ, from the
    same set-up), ``"tangent"`` (A ẋ = r with M) and ``"second_adjoint"`` (Aᵀ λ̇ = r with
    Mᵀ).
    """

    #: Global number of unknowns N.
    n: int
    #: The declared structure of A(θ).
    structure: Structure
    #: True when the preconditioner is given ready-made (or none): never set up again.
    preconditioner_fixed: bool
    #: The kind of preconditioner, for reports.
    preconditioner_name: str
    #: True for a kind set up again for every new θ unless asked otherwise (a factorisation).
    preconditioner_refresh_per_theta: bool
    #: True when the backend solves blocks of sources (``solve_block``,
    #: ``block_parameter_gradient``, ``preconditioner_takes_blocks``: the serial backend);
    #: many sources then may go in blocks (:mod:`.sources`), else one by one.
    supports_blocks: bool

    def bind(self, theta: Any) -> tuple[BoundProblem, bool]:
        """The problem at θ (checked; collective) and whether θ differs from the last one."""

    def check_direction(self, dtheta: Any) -> Any:
        """A θ-like direction, checked; returned as the backend's parameter vector."""

    def check_state(self, value: Any, name: str) -> Any:
        """An x-like input (a right-hand side given to a solve), checked; returned as the
        backend's vector (collective)."""

    def equal(self, a: Any, b: Any) -> bool:
        """True when two vectors hold the same values (on every rank)."""

    def set_up_preconditioner(self, bound: BoundProblem, *, keep_interpolation: bool) -> bool:
        """Set the preconditioner up from the assembled A(θ) (not called when fixed).

        With ``keep_interpolation`` an AMG preconditioner set up before keeps its coarsening
        and recomputes the rest at the new A; returns whether it did (False: a full set-up).
        """

    def can_keep_interpolation(self) -> bool:
        """Whether a set-up again now would keep the preconditioner's coarsening (an AMG set
        up before, of a kind that can)."""

    def preconditioner_is_symmetric(self) -> bool | None:
        """Whether the current preconditioner is a symmetric map (None: unknown)."""

    def assembled_symmetry_gap(self) -> float:
        """Relative asymmetry of the matrix of the last set-up: a randomised probe."""

    def solve(self, phase: str, bound: BoundProblem, rhs: Any, x0: Any,
              settings: SolveSettings) -> tuple[SolveResult, Any]:
        """One Krylov solve; returns its record and the solution vector.

        With a declared nullspace: the minimum-norm solution, the right-hand side projected
        onto the range (``rhs`` along the nullspace of Aᵀ removed for A, along that of A for
        Aᵀ), the iterations and the solution kept orthogonal to the nullspace."""

    def rhs(self, bound: BoundProblem) -> Any:
        """b(θ)."""

    def objective_value(self, bound: BoundProblem, x: Any) -> float:
        """J(x, θ) (global)."""

    def objective_grad_x(self, bound: BoundProblem, x: Any) -> Any:
        """∂J/∂x."""

    def parameter_gradient(self, bound: BoundProblem, x: Any, lam: Any) -> Any:
        """dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)."""

    def operator_vjp(self, bound: BoundProblem, x: Any, lam: Any) -> Any:
        """λᵀ(∂A/∂θ)x as a parameter vector (zero for an operator independent of θ)."""

    def nullspace_measure(self, bound: BoundProblem, v: Any, *, transpose: bool) -> float:
        """‖component of v along the nullspace of A (of Aᵀ when ``transpose``)‖ / ‖v‖
        (global; 0 without a declared nullspace)."""

    def nullspace_split(self, bound: BoundProblem, v: Any, *, transpose: bool) -> Any:
        """The component of v along the nullspace of A (of Aᵀ when ``transpose``)."""

    def nullspace_residuals(self, bound: BoundProblem) -> list[tuple[str, int, float]]:
        """``(callback, column, ‖A v‖/(‖A‖‖v‖))`` for each declared nullspace vector
        (see :func:`~.checks.check_nullspace`)."""

    def tangent_rhs(self, bound: BoundProblem, x: Any, dtheta: Any) -> Any:
        """(∂b/∂θ)dθ − (∂A/∂θ·dθ)x."""

    def second_adjoint_rhs(self, bound: BoundProblem, x: Any, xdot: Any, lam: Any,
                           dtheta: Any, *, gauss_newton: bool) -> Any:
        """∂²J/∂x²·ẋ + ∂²J/∂x∂θ·dθ − (∂A/∂θ·dθ)ᵀλ (no last term for Gauss–Newton)."""

    def hessian_action(self, bound: BoundProblem, x: Any, xdot: Any, lam: Any, lamdot: Any,
                       dtheta: Any, *, gauss_newton: bool) -> Any:
        """H·dθ from ẋ and λ̇ (see ``BoundProblem.hessian_action``)."""

    def direct_derivative(self, bound: BoundProblem, x: Any, dtheta: Any) -> float:
        """∂J/∂θ·dθ (global; 0 when J does not depend on θ explicitly)."""

    def with_source(self, bound: BoundProblem, rhs: Any, objective: Any) -> BoundProblem:
        """The problem at the same θ with one source's right-hand side and objective."""

    def apply(self, bound: BoundProblem, v: Any, *, transpose: bool) -> Any:
        """A(θ) v or A(θ)ᵀ v."""

    def random_vector(self, rng: np.random.Generator) -> Any:
        """A standard normal vector on x's layout."""

    def dot(self, a: Any, b: Any) -> float:
        """The global inner product."""

    def copy(self, v: Any) -> Any:
        """An independent copy."""

    def combine(self, a: Any, alpha: float, b: Any) -> Any:
        """A new vector ``a + alpha·b`` (x's or θ's layout, as a and b)."""

    def norm(self, v: Any) -> float:
        """The global 2-norm."""

    def is_finite(self, v: Any) -> bool:
        """True when every entry (on every rank) is finite."""

    def gradient_result(self, **fields: Any) -> GradientResult:
        """The result record of a gradient evaluation."""

    def tangent_result(self, **fields: Any) -> TangentResult:
        """The result record of a directional derivative."""

    def hessian_result(self, **fields: Any) -> HessianResult:
        """The result record of a Hessian (or Gauss–Newton) action."""

"""The problem at one θ on PETSc Vecs: halo exchanges and Vec callbacks around the shared checks.

The callbacks are called and checked by the library's one
:class:`~krylov_adjoint.problem.bound.BoundProblem`, with the rank's :class:`ErrorGuard` as
its failure policy (a failure is recorded, the output becomes NaN, and every rank raises at
the next checkpoint). This module only moves data: owned parts of Vecs in and out, ghosted
arrays from the declared halos, and the ``"vecs"`` interface, whose callbacks write into
Vecs themselves.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..._checks import as_real_vector
from ...errors import CallbackError, MissingCallbackError
from ...problem.bound import BoundProblem, frozen
from ._import import mpi
from .collective import ErrorGuard
from .problem import DistributedProblem, Halo

__all__ = ["VecProblem", "VecSpace", "BoundVecs"]


class VecProblem:
    """A :class:`DistributedProblem` at θ, applied to PETSc Vecs (collective methods).

    Every method is called by all ranks together, never raises on one rank only, and
    records failures in ``guard``; the caller runs ``guard.checkpoint`` after.

    Parameters
    ----------
    problem : DistributedProblem
    theta : petsc4py.PETSc.Vec
        θ on the problem's θ layout (this object keeps using it: do not change it).
    guard : ErrorGuard
    """

    #: The declared nullspace at this θ as PETSc objects (set by the backend), or None.
    nullspace: Any = None

    def __init__(self, problem: DistributedProblem, theta: Any, guard: ErrorGuard) -> None:
        self.problem, self.guard, self.theta_vec = problem, guard, theta
        op = problem.operator
        self.operator = op
        self.vecs = op.uses_vecs
        theta_operator = theta if self.vecs else frozen(self._ghost(op.theta_halo, theta,
                                                                    "theta"))
        self.bound = BoundProblem(problem, theta.getArray(readonly=True), guard,
                                  theta_operator=theta_operator, check_products=True)

    def with_objective(self, objective: Any) -> VecProblem:
        """The same problem at the same θ with another objective (see
        :meth:`~krylov_adjoint.problem.bound.BoundProblem.with_objective`)."""
        view = copy.copy(self)
        view.bound = self.bound.with_objective(objective)
        return view

    def with_source(self, rhs: Any, objective: Any) -> VecProblem:
        """The same problem at the same θ with another right-hand side and objective (see
        :meth:`~krylov_adjoint.problem.bound.BoundProblem.with_source`)."""
        view = copy.copy(self)
        view.bound = self.bound.with_source(rhs, objective)
        return view

    # -- the operator -------------------------------------------------------------------------
    def matvec(self, x: Any, y: Any) -> None:
        """``y = A(θ) x``."""
        if self.vecs:
            self._vec_call("operator.matvec", self.operator._matvec, x, y)
        else:
            y.setArray(self.bound.matvec(self._ghost(self.operator.halo, x, "x")))

    def rmatvec(self, x: Any, y: Any) -> None:
        """``y = A(θ)ᵀ x``."""
        if self.vecs:
            self._vec_call(self.operator.rmatvec_name, self.operator._rmatvec, x, y)
        else:
            y.setArray(self.bound.rmatvec(self._ghost(self.operator.halo, x, "y")))

    def assemble(self) -> Any:
        """This rank's rows of the assembled A(θ) as the user gave them (None on failure)."""
        return self.bound.assemble()

    # -- right-hand side and objective ---------------------------------------------------------
    def rhs(self, b: Any) -> None:
        """``b = b(θ)``."""
        b.setArray(self.bound.b())

    def objective_value(self, x: Any) -> float:
        """This rank's contribution to J(x, θ) (NaN on failure)."""
        return self.bound.objective_value(x.getArray(readonly=True))

    def objective_grad_x(self, x: Any, out: Any) -> None:
        """``out = ∂J/∂x`` (this rank's part)."""
        out.setArray(self.bound.objective_grad_x(x.getArray(readonly=True)))

    def direct_derivative(self, x: Any, dtheta: Any) -> float:
        """This rank's part of ∂J/∂θ·dθ."""
        direct = self.bound.objective_grad_theta(x.getArray(readonly=True))
        if direct is None:
            return 0.0
        return float(direct @ dtheta.getArray(readonly=True))

    # -- derivatives with respect to θ -----------------------------------------------------------
    def parameter_gradient(self, x: Any, lam: Any, out: Any) -> None:
        """``out = ∂J/∂θ − λᵀ(∂A/∂θ·x) + λᵀ∂b/∂θ`` (this rank's owned part)."""
        xa, lama = x.getArray(readonly=True), lam.getArray(readonly=True)
        if self.vecs:
            term = self._vec_vjp(x, lam)
            out.setArray(self.bound.parameter_gradient(xa, lama, operator_term=term))
            return
        halo = self.operator.halo
        out.setArray(self.bound.parameter_gradient(
            xa, lama, x_operator=self._ghost(halo, x, "x"),
            lam_operator=self._ghost(halo, lam, "lam")))

    def operator_vjp(self, x: Any, lam: Any, out: Any) -> None:
        """``out = λᵀ(∂A/∂θ)x`` (this rank's owned part; zero for an operator without θ)."""
        if self.vecs:
            term = self._vec_vjp(x, lam)
        else:
            halo = self.operator.halo
            term = self.bound.operator_vjp(self._ghost(halo, x, "x"), self._ghost(halo, lam,
                                                                                  "lam"))
        out.setArray(np.zeros(self.bound.params_local) if term is None else term)

    def tangent_rhs(self, x: Any, dtheta: Any, out: Any) -> None:
        """``out = (∂b/∂θ)dθ − (∂A/∂θ·dθ)x``."""
        xa, da = x.getArray(readonly=True), dtheta.getArray(readonly=True)
        if self.vecs:
            out.setArray(self.bound.tangent_rhs(xa, da, operator_term=self._vec_jvp(x, dtheta)))
            return
        op = self.operator
        out.setArray(self.bound.tangent_rhs(
            xa, da, x_operator=self._ghost(op.halo, x, "x"),
            dtheta_operator=self._ghost(op.theta_halo, dtheta, "dtheta")))

    def rhs_jvp(self, dtheta: Any, out: Any) -> None:
        """``out = (∂b/∂θ)dθ`` (zero for a fixed b)."""
        term = self.bound.rhs_jvp(dtheta.getArray(readonly=True))
        out.setArray(np.zeros(self.bound.n_local) if term is None else term)

    def rhs_vjp(self, lam: Any, out: Any) -> None:
        """``out = λᵀ∂b/∂θ`` (zero for a fixed b)."""
        term = self.bound.rhs_vjp(lam.getArray(readonly=True))
        out.setArray(np.zeros(self.bound.params_local) if term is None else term)

    def operator_jvp(self, x: Any, dtheta: Any, out: Any) -> None:
        """``out = (∂A/∂θ·dθ)x`` (zero for an operator independent of θ)."""
        if self.vecs:
            term = self._vec_jvp(x, dtheta)
        else:
            op = self.operator
            term = self.bound.operator_jvp(self._ghost(op.halo, x, "x"),
                                           self._ghost(op.theta_halo, dtheta, "dtheta"))
        out.setArray(np.zeros(self.bound.n_local) if term is None else term)

    # -- second order ---------------------------------------------------------------------------
    def second_adjoint_rhs(self, x: Any, xdot: Any, lam: Any, dtheta: Any, out: Any, *,
                           gauss_newton: bool) -> None:
        """``out = ∂²J/∂x²·ẋ + ∂²J/∂x∂θ·dθ − (∂A/∂θ·dθ)ᵀλ`` (no last term for Gauss–Newton)."""
        self._refuse_vecs_interface()
        op = self.operator
        out.setArray(self.bound.second_adjoint_rhs(
            x.getArray(readonly=True), xdot.getArray(readonly=True),
            lam.getArray(readonly=True), dtheta.getArray(readonly=True),
            gauss_newton=gauss_newton, lam_operator=self._ghost(op.halo, lam, "lam"),
            dtheta_operator=self._ghost(op.theta_halo, dtheta, "dtheta")))

    def hessian_action(self, x: Any, xdot: Any, lam: Any, lamdot: Any, dtheta: Any, out: Any,
                       *, gauss_newton: bool) -> None:
        """``out = H·dθ`` from ẋ and λ̇ (this rank's owned θ entries)."""
        self._refuse_vecs_interface()
        halo = self.operator.halo
        ghosted = {name: self._ghost(halo, vec, name)
                   for name, vec in (("x", x), ("xdot", xdot), ("lam", lam), ("lamdot", lamdot))}
        ghosted["dtheta"] = self._ghost(self.operator.theta_halo, dtheta, "dtheta")
        owned = [v.getArray(readonly=True) for v in (x, xdot, lam, lamdot, dtheta)]
        out.setArray(self.bound.hessian_action(*owned, gauss_newton=gauss_newton,
                                               operator_inputs=ghosted))

    def _refuse_vecs_interface(self) -> None:
        """Second-order terms are array callbacks (the same decision on every rank)."""
        if self.vecs:
            raise MissingCallbackError(
                "Hessian actions need the 'arrays' interface of DistributedOperator: the "
                "second-order callbacks take local arrays")

    # -- plumbing --------------------------------------------------------------------------------
    def _ghost(self, halo: Halo | None, vec: Any, slot: str) -> np.ndarray:
        """Collective: the ghosted array of ``vec`` (its owned part without a halo)."""
        if halo is None:
            return vec.getArray(readonly=True)
        return halo.exchange(vec, slot)

    def _vec_vjp(self, x: Any, lam: Any) -> np.ndarray | None:
        if not self.operator.depends_on_theta:
            return None
        work = self.problem.theta_layout.create_vec()
        self._vec_call("operator.vjp", self.operator._vjp, x, lam, work)
        term = self.bound._vector("operator.vjp", work.getArray(readonly=True).copy(),
                                  self.bound.params_local)
        work.destroy()
        return term

    def _vec_jvp(self, x: Any, dtheta: Any) -> np.ndarray | None:
        op = self.operator
        if not op.depends_on_theta:
            return None
        if op._jvp is None:
            self.guard.record("operator.jvp", CallbackError(
                "operator.jvp", "was not supplied: forward mode needs (∂A/∂θ·dθ)x"))
            return np.full(self.bound.n_local, math.nan)
        work = self.problem.x_layout.create_vec()
        self._vec_call("operator.jvp", op._jvp, x, dtheta, work)
        term = self.bound._vector("operator.jvp", work.getArray(readonly=True).copy(),
                                  self.bound.n_local)
        work.destroy()
        return term

    def _vec_call(self, name: str, fn: Callable[..., Any], *args: Any) -> None:
        """Call a ``"vecs"`` callback ``fn(θ, *args)`` (always: it may communicate); its
        last argument is the output Vec, NaN after a failure."""
        out = args[-1]
        failed_before = self.guard.failed
        returned = self.bound.call_operator(name, fn, self.theta_vec, *args)
        if returned is not None:
            self.guard.record(name, CallbackError(
                name, "a 'vecs' callback writes into its last argument and returns None, got "
                      f"{type(returned).__name__}"))
        if self.guard.failed and not failed_before:
            out.set(math.nan)


class VecSpace:
    """The verification space of a :class:`DistributedProblem` (see
    :mod:`krylov_adjoint.verify.space`): this rank's parts as arrays, global inner products,
    callbacks through :class:`VecProblem` and the rank's guard, checkpointed after each call
    so that a failing callback raises on every rank, naming it.
    """

    def __init__(self, problem: DistributedProblem) -> None:
        self.problem, self.comm = problem, problem.comm
        self.guard = ErrorGuard(problem.comm)
        self.n, self.n_local = problem.n, problem.n_local
        self.n_params, self.params_local = problem.n_params, problem.params_local

    def generator(self, rng: Any) -> np.random.Generator:
        """``rng`` itself, else a generator seeded by (rng, rank); fresh when None."""
        if isinstance(rng, np.random.Generator):
            return rng
        if rng is None:
            return np.random.default_rng()
        return np.random.default_rng([int(rng), self.guard.rank])

    def check_theta(self, theta: Any, name: str = "theta") -> np.ndarray:
        out = np.zeros(self.params_local)
        with self.guard.local(name, is_input=True):
            out = frozen(as_real_vector(theta, name, self.params_local, callback=False))
        self.guard.checkpoint(f"the check of {name}")
        return out

    def bind(self, theta: np.ndarray) -> BoundVecs:
        vec = self.problem.theta_layout.create_vec()
        vec.setArray(theta)
        bound = VecProblem(self.problem, vec, self.guard)
        self.guard.checkpoint("operator.prepare")
        return BoundVecs(bound)

    def total(self, value: float) -> float:
        return float(self.comm.allreduce(float(value), op=mpi().SUM))

    def preconditioner_maps(self, pc: Any) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                    Callable[[np.ndarray], np.ndarray]]:
        """``pc.apply`` and ``pc.applyTranspose`` on this rank's parts of x (collective)."""
        layout = self.problem.x_layout

        def on_arrays(method: Callable[[Any, Any], None]) -> Callable[[np.ndarray], np.ndarray]:
            def apply(u: np.ndarray) -> np.ndarray:
                vec, out = layout.create_vec(), layout.create_vec()
                vec.setArray(u)
                method(vec, out)
                result = out.getArray(readonly=True).copy()
                vec.destroy()
                out.destroy()
                return result
            return apply

        return on_arrays(pc.apply), on_arrays(pc.applyTranspose)

    def checked_preconditioner(self, theta: np.ndarray, solver: Any, spec: Any) -> Any:
        """The PC type to test: ``spec`` (a PC type name), else the solver's, else None."""
        if spec is None and solver is not None:
            spec = solver.pc_type
        if spec is not None and not isinstance(spec, str):
            raise TypeError(f"preconditioner: on PETSc, give a PC type name, got "
                            f"{type(spec).__name__}")
        return None if spec in (None, "none") else spec

    def new_solver(self, like: Any, preconditioner: Any, rtol: float) -> Any:
        from .solver import PetscAdjointSolver

        # the Taylor test judges the gradient itself: the engine's own check is off
        kwargs: dict[str, Any] = {"preconditioner": preconditioner or "none", "rtol": rtol,
                                  "atol": 0.0, "check_gradient": False}
        if like is not None:
            kwargs.update(method=like.method, rtol=min(like.rtol, rtol))
        return PetscAdjointSolver(self.problem, **kwargs)


class BoundVecs:
    """A :class:`VecProblem` on local arrays: each call collective and checkpointed."""

    def __init__(self, bound: VecProblem) -> None:
        self.vecs, self.bound, self.guard = bound, bound.bound, bound.guard
        self.problem = bound.problem

    def _apply(self, method: Callable[..., None], name: str, out_layout: Any,
               *inputs: tuple[Any, np.ndarray]) -> np.ndarray:
        vecs = []
        for layout, array in inputs:
            vec = layout.create_vec()
            vec.setArray(array)
            vecs.append(vec)
        out = out_layout.create_vec()
        method(*vecs, out)
        self.guard.checkpoint(name)
        result = out.getArray(readonly=True).copy()
        for vec in (*vecs, out):
            vec.destroy()
        return result

    def matvec(self, x: np.ndarray, *, check_finite: bool = True) -> np.ndarray:
        xl = self.problem.x_layout
        return self._apply(self.vecs.matvec, "operator.matvec", xl, (xl, x))

    def rmatvec(self, y: np.ndarray, *, check_finite: bool = True) -> np.ndarray:
        xl = self.problem.x_layout
        return self._apply(self.vecs.rmatvec, self.vecs.operator.rmatvec_name, xl, (xl, y))

    def operator_vjp(self, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        xl, tl = self.problem.x_layout, self.problem.theta_layout
        return self._apply(self.vecs.operator_vjp, "operator.vjp", tl, (xl, x), (xl, lam))

    def operator_jvp(self, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        xl, tl = self.problem.x_layout, self.problem.theta_layout
        return self._apply(self.vecs.operator_jvp, "operator.jvp", xl, (xl, x), (tl, dtheta))

    def _local(self, name: str, value: Any) -> Any:
        self.guard.checkpoint(name)
        return value

    def b(self) -> np.ndarray:
        return self._local("rhs", self.bound.b())

    def rhs_vjp(self, lam: np.ndarray) -> np.ndarray | None:
        return self._local("rhs.vjp", self.bound.rhs_vjp(lam))

    def rhs_jvp(self, dtheta: np.ndarray) -> np.ndarray | None:
        return self._local("rhs.jvp", self.bound.rhs_jvp(dtheta))

    def objective_value(self, x: np.ndarray) -> float:
        local = self._local("objective.value", self.bound.objective_value(x))
        return float(self.problem.comm.allreduce(float(local), op=mpi().SUM))

    def objective_grad_x(self, x: np.ndarray) -> np.ndarray:
        return self._local("objective.grad_x", self.bound.objective_grad_x(x))

    def objective_grad_theta(self, x: np.ndarray) -> np.ndarray | None:
        return self._local("objective.grad_theta", self.bound.objective_grad_theta(x))

    # -- second order: the checked calls, with the operator's halos ------------------------------
    def _ghosted(self, *inputs: tuple[str, np.ndarray]) -> list[np.ndarray]:
        """Collective: the operator's view of local x-like (``"x"``, ``"lam"``, ``"y"``) and
        θ-like (``"dtheta"``) arrays, ghosted through its halos."""
        self.vecs._refuse_vecs_interface()
        op, out = self.vecs.operator, []
        for slot, array in inputs:
            layout, halo = ((self.problem.theta_layout, op.theta_halo) if slot == "dtheta"
                            else (self.problem.x_layout, op.halo))
            vec = layout.create_vec()
            vec.setArray(array)
            out.append(np.array(self.vecs._ghost(halo, vec, slot)))
            vec.destroy()
        return out

    def operator_vjp_jvp(self, x: np.ndarray, lam: np.ndarray,
                         dtheta: np.ndarray) -> np.ndarray | None:
        inputs = self._ghosted(("x", x), ("lam", lam), ("dtheta", dtheta))
        return self._local("operator.vjp_jvp", self.bound.operator_vjp_jvp(*inputs))

    def operator_jvp_transpose(self, y: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        inputs = self._ghosted(("lam", y), ("dtheta", dtheta))
        return self._local("operator.jvp_transpose", self.bound.operator_jvp_transpose(*inputs))

    def rhs_vjp_jvp(self, lam: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        return self._local("rhs.vjp_jvp", self.bound.rhs_vjp_jvp(lam, dtheta))

    def objective_second(self, name: str, x: np.ndarray, v: np.ndarray) -> np.ndarray | None:
        return self._local(f"objective.{name}", self.bound.objective_second(name, x, v))

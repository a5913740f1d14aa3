"""The problem at one θ: every user callback called and checked in one place, for every backend.

A :class:`BoundProblem` holds θ (read-only) and calls the operator's, the right-hand side's
and the objective's callbacks on *local* numpy arrays: the whole vectors on the serial
backend, this rank's part (or its ghosted box) on PETSc. Each output is checked for type,
shape, dtype and finiteness, and a failure names the callback. How a failure is reported is
the backend's business, through a :class:`FailurePolicy`: the serial backend raises at once
(:class:`RaiseNow`); the PETSc backend records the failure on its rank, fills the output with
NaN so that collective work goes on, and raises on every rank at its next checkpoint.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .._checks import as_real_scalar, as_real_vector, as_vector, callback_failure, readonly
from ..errors import CallbackError, NonFiniteError
from .nullspace import NullspaceBasis

__all__ = ["BoundProblem", "FailurePolicy", "RaiseNow", "frozen"]


class FailurePolicy(Protocol):
    """How a :class:`BoundProblem` reports a failing callback."""

    @property
    def failed(self) -> bool:
        """True when a failure was recorded and not yet reported."""

    def record(self, where: str, exc: BaseException) -> None:
        """Report (serial: raise) or remember (distributed) the failure ``exc`` of ``where``."""


class RaiseNow:
    """The serial policy: a failing callback raises at once."""

    failed = False

    def record(self, where: str, exc: BaseException) -> None:
        raise exc


def frozen(array: Any) -> np.ndarray:
    """A private read-only float64 copy."""
    out = np.array(array, dtype=np.float64, copy=True)
    out.flags.writeable = False
    return out


class BoundProblem:
    """The callbacks of a problem at one θ, called on local arrays and checked.

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
        Supplies ``operator``, ``rhs``, ``objective``, ``n_local`` (length of x here) and
        ``params_local`` (length of θ here).
    theta : ndarray
        θ (this rank's owned part); kept as a private read-only copy.
    policy : FailurePolicy
    theta_operator : ndarray, optional
        θ as the operator's callbacks see it (ghosted on PETSc with a θ halo); θ by default.
    check_products : bool
        Check operator products for NaN/Inf (one reduction over the output). The serial
        Krylov methods notice NaN on their own; a distributed solve needs the check to blame
        the right rank.

    Notes
    -----
    The operator's ``prepare(θ)`` runs once here, and again before an operator callback if
    another θ was bound in between (two solvers sharing one operator).
    """

    def __init__(self, problem: Any, theta: Any, policy: FailurePolicy, *,
                 theta_operator: Any = None, check_products: bool = False) -> None:
        self.problem = problem
        self.operator, self.rhs_callbacks, self.objective = (problem.operator, problem.rhs,
                                                             problem.objective)
        self.policy = policy
        self.n_local, self.params_local = int(problem.n_local), int(problem.params_local)
        self.theta = frozen(theta)
        # the backend passes it private and read-only (a ghosted copy, or a Vec)
        self.theta_operator = self.theta if theta_operator is None else theta_operator
        self.check_products = check_products
        self._binding = object()  # what the operator was prepared for (shared by views)
        self._nullspace: Any = None
        #: float64, or complex128 for a complex system (x, b, λ complex; θ real).
        self.dtype = np.dtype(getattr(problem, "dtype", np.float64))
        self._prepare()

    def with_objective(self, objective: Any) -> BoundProblem:
        """The same problem at the same θ with another objective (an output of a Jacobian):
        the operator stays prepared, the objective's callbacks are checked alike."""
        view = copy.copy(self)
        view.objective = objective
        return view

    def with_source(self, rhs: Any, objective: Any) -> BoundProblem:
        """The same problem at the same θ with another right-hand side and objective (one
        source of :class:`~krylov_adjoint.Sources`), checked alike."""
        view = self.with_objective(objective)
        view.rhs_callbacks = rhs
        return view

    # -- the operator ------------------------------------------------------------------
    def matvec(self, x: np.ndarray, *, check_finite: bool = False) -> np.ndarray:
        """A(θ) x (this rank's rows; ``x`` ghosted when the operator declares a halo).

        Shape and dtype are always checked; finiteness with ``check_finite`` (or
        ``check_products``), else by the Krylov methods on each new residual at no cost.
        """
        return self._product("operator.matvec", self.operator.matvec, x, check_finite)

    def rmatvec(self, y: np.ndarray, *, check_finite: bool = False) -> np.ndarray:
        """A(θ)ᵀ y (checked as :meth:`matvec`); A(θ)ᴴ y for a complex system."""
        return self._product(self.operator.rmatvec_name, self.operator.rmatvec, y,
                             check_finite)

    def assemble(self) -> Any:
        """The user's assembled A(θ) (or its rows), unchecked: its form is the backend's."""
        return self.call_operator("operator.assemble", self.operator.assemble,
                                   self.theta_operator)

    def operator_vjp(self, x: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
        """λᵀ(∂A/∂θ)x (owned θ entries); None for an operator independent of θ."""
        if not self.operator.depends_on_theta:
            return None
        out = self.call_operator("operator.vjp", self.operator.vjp, self.theta_operator,
                                  readonly(x), readonly(lam))
        return self._vector("operator.vjp", out, self.params_local)

    def operator_jvp(self, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        """(∂A/∂θ·dθ)x; None for an operator independent of θ."""
        if not self.operator.depends_on_theta:
            return None
        out = self.call_operator("operator.jvp", self.operator.jvp, self.theta_operator,
                                  readonly(x), readonly(dtheta))
        return self._vector("operator.jvp", out, self.n_local, state=True)

    def nullspace(self) -> NullspaceBasis | None:
        """The orthonormal nullspace bases of A(θ) and A(θ)ᵀ (serial), computed once per θ;
        None for a nonsingular operator."""
        declared = self.operator.nullspace
        if declared is None:
            return None
        if self._nullspace is None:
            self._nullspace = declared.at(self.theta_operator, self.n_local)
        return self._nullspace

    # -- right-hand side -----------------------------------------------------------------
    def b(self) -> np.ndarray:
        """b(θ)."""
        rhs = self.rhs_callbacks
        if not rhs.depends_on_theta:
            return rhs.value(None)
        return self._vector("rhs", self._call("rhs", rhs.value, self.theta), self.n_local,
                            state=True)

    def rhs_vjp(self, lam: np.ndarray) -> np.ndarray | None:
        """λᵀ∂b/∂θ; None for a fixed b."""
        rhs = self.rhs_callbacks
        if not rhs.depends_on_theta:
            return None
        out = self._call("rhs.vjp", rhs.vjp, self.theta, readonly(lam))
        return self._vector("rhs.vjp", out, self.params_local)

    def rhs_jvp(self, dtheta: np.ndarray) -> np.ndarray | None:
        """(∂b/∂θ)dθ; None for a fixed b."""
        rhs = self.rhs_callbacks
        if not rhs.depends_on_theta:
            return None
        out = self._call("rhs.jvp", rhs.jvp, self.theta, readonly(dtheta))
        return self._vector("rhs.jvp", out, self.n_local, state=True)

    # -- objective -------------------------------------------------------------------------
    def objective_value(self, x: np.ndarray) -> float:
        """J(x, θ) (on PETSc: this rank's contribution); NaN after a recorded failure."""
        value = self._call("objective.value", self.objective.value, readonly(x), self.theta)
        if self.policy.failed:
            return math.nan
        try:
            return as_real_scalar(value, "objective.value")
        except CallbackError as exc:
            self.policy.record("objective.value", exc)
            return math.nan

    def objective_grad_x(self, x: np.ndarray) -> np.ndarray:
        """∂J/∂x."""
        out = self._call("objective.grad_x", self.objective.grad_x, readonly(x), self.theta)
        return self._vector("objective.grad_x", out, self.n_local, state=True)

    def objective_grad_theta(self, x: np.ndarray) -> np.ndarray | None:
        """∂J/∂θ; None when J does not depend on θ explicitly."""
        out = self._call("objective.grad_theta", self.objective.grad_theta, readonly(x),
                         self.theta)
        if out is None:
            return None
        return self._vector("objective.grad_theta", out, self.params_local)

    # -- the gradient ------------------------------------------------------------------------
    def parameter_gradient(self, x: np.ndarray, lam: np.ndarray, *,
                           x_operator: np.ndarray | None = None,
                           lam_operator: np.ndarray | None = None,
                           operator_term: np.ndarray | None = None) -> np.ndarray:
        """dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x) + λᵀ∂b/∂θ (owned entries).

        ``x_operator`` and ``lam_operator`` are x and λ as the operator's VJP sees them
        (ghosted on PETSc with a halo); x and λ by default. ``operator_term`` is λᵀ(∂A/∂θ)x
        when the backend computed it itself (callbacks on PETSc Vecs).
        """
        if operator_term is None:
            operator_term = self.operator_vjp(x if x_operator is None else x_operator,
                                              lam if lam_operator is None else lam_operator)
        grad = np.zeros(self.params_local)
        for term, sign in ((self.objective_grad_theta(x), 1.0), (operator_term, -1.0),
                           (self.rhs_vjp(lam), 1.0)):
            if term is not None:
                grad += sign * term
        return grad

    def tangent_rhs(self, x: np.ndarray, dtheta: np.ndarray, *,
                    x_operator: np.ndarray | None = None,
                    dtheta_operator: np.ndarray | None = None,
                    operator_term: np.ndarray | None = None) -> np.ndarray:
        """(∂b/∂θ)dθ − (∂A/∂θ·dθ)x: the right-hand side of the tangent solve.

        The keywords are those of :meth:`parameter_gradient`, for the JVP.
        """
        if operator_term is None:
            operator_term = self.operator_jvp(x if x_operator is None else x_operator,
                                              dtheta if dtheta_operator is None
                                              else dtheta_operator)
        out = np.zeros(self.n_local, dtype=self.dtype)
        for term, sign in ((self.rhs_jvp(dtheta), 1.0), (operator_term, -1.0)):
            if term is not None:
                out += sign * term
        return out

    # -- second order ----------------------------------------------------------------------------
    def second_adjoint_rhs(self, x: np.ndarray, xdot: np.ndarray, lam: np.ndarray,
                           dtheta: np.ndarray, *, gauss_newton: bool,
                           lam_operator: np.ndarray | None = None,
                           dtheta_operator: np.ndarray | None = None) -> np.ndarray:
        """The right-hand side of the second-order adjoint solve ``Aᵀ λ̇ = r``:
        ``r = ∂²J/∂x²·ẋ + ∂²J/∂x∂θ·dθ − (∂A/∂θ·dθ)ᵀλ`` (the last term dropped for
        Gauss–Newton). ``*_operator`` are the inputs as the operator's callbacks see them
        (ghosted on PETSc with a halo)."""
        terms = [(self.objective_second("d2J_dx2", x, xdot), 1.0),
                 (self.objective_second("d2J_dxdtheta", x, dtheta), 1.0)]
        if not gauss_newton:
            terms.append((self.operator_jvp_transpose(
                lam if lam_operator is None else lam_operator,
                dtheta if dtheta_operator is None else dtheta_operator), -1.0))
        return _combine(terms, self.n_local)

    def hessian_action(self, x: np.ndarray, xdot: np.ndarray, lam: np.ndarray,
                       lamdot: np.ndarray, dtheta: np.ndarray, *, gauss_newton: bool,
                       operator_inputs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The Hessian (or Gauss–Newton) action from the tangent ẋ and the second-order
        adjoint λ̇ (owned θ entries)::

            H dθ = ∂²J/∂θ²·dθ + ∂²J/∂θ∂x·ẋ − λ̇ᵀ(∂A/∂θ)x + λ̇ᵀ∂b/∂θ
                   − λᵀ(∂A/∂θ)ẋ − ∂/∂θ[λᵀ(∂A/∂θ)x]·dθ + ∂/∂θ[λᵀ∂b/∂θ]·dθ

        Gauss–Newton keeps the first line only. ``operator_inputs`` holds x, ẋ, λ, λ̇ and dθ
        as the operator's callbacks see them (keys ``"x"``, ``"xdot"``, ``"lam"``,
        ``"lamdot"``, ``"dtheta"``; ghosted on PETSc with a halo).
        """
        seen = {"x": x, "xdot": xdot, "lam": lam, "lamdot": lamdot, "dtheta": dtheta,
                **(operator_inputs or {})}
        terms = [(self.objective_second("d2J_dtheta2", x, dtheta), 1.0),
                 (self.objective_second("d2J_dthetadx", x, xdot), 1.0),
                 (self.operator_vjp(seen["x"], seen["lamdot"]), -1.0),
                 (self.rhs_vjp(lamdot), 1.0)]
        if not gauss_newton:
            terms += [(self.operator_vjp(seen["xdot"], seen["lam"]), -1.0),
                      (self.operator_vjp_jvp(seen["x"], seen["lam"], seen["dtheta"]), -1.0),
                      (self.rhs_vjp_jvp(lam, dtheta), 1.0)]
        return _combine(terms, self.params_local)

    def operator_vjp_jvp(self, x: np.ndarray, lam: np.ndarray,
                         dtheta: np.ndarray) -> np.ndarray | None:
        """∂/∂θ[λᵀ(∂A/∂θ)x]·dθ (owned θ entries); None for an operator independent of θ."""
        if not self.operator.depends_on_theta:
            return None
        out = self.call_operator("operator.vjp_jvp", self.operator.vjp_jvp, self.theta_operator,
                                 readonly(x), readonly(lam), readonly(dtheta))
        return self._vector("operator.vjp_jvp", out, self.params_local)

    def operator_jvp_transpose(self, y: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        """(∂A/∂θ·dθ)ᵀy; None for an operator independent of θ."""
        if not self.operator.depends_on_theta:
            return None
        out = self.call_operator("operator.jvp_transpose", self.operator.jvp_transpose,
                                 self.theta_operator, readonly(y), readonly(dtheta))
        return self._vector("operator.jvp_transpose", out, self.n_local, state=True)

    def rhs_vjp_jvp(self, lam: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        """∂/∂θ[λᵀ∂b/∂θ]·dθ (owned θ entries); None for a fixed b."""
        if not self.rhs_callbacks.depends_on_theta:
            return None
        out = self._call("rhs.vjp_jvp", self.rhs_callbacks.vjp_jvp, self.theta, readonly(lam),
                         readonly(dtheta))
        return self._vector("rhs.vjp_jvp", out, self.params_local)

    def objective_second(self, name: str, x: np.ndarray, v: np.ndarray) -> np.ndarray | None:
        """An objective second derivative at (x, θ) applied to ``v``, checked; ``name`` is
        ``"d2J_dx2"`` (v like x), ``"d2J_dxdtheta"`` (v like θ), ``"d2J_dthetadx"`` (v like
        x) or ``"d2J_dtheta2"`` (v like θ). None when identically zero."""
        method, length = {"d2J_dx2": ("hess_xx", self.n_local),
                          "d2J_dxdtheta": ("hess_xtheta", self.n_local),
                          "d2J_dthetadx": ("hess_thetax", self.params_local),
                          "d2J_dtheta2": ("hess_thetatheta", self.params_local)}[name]
        return self._second(f"objective.{name}", getattr(self.objective, method), x,
                            self.theta, v, length=length)

    def _second(self, name: str, fn: Callable[..., Any], *args: Any,
                length: int) -> np.ndarray | None:
        """An objective second derivative (None when identically zero), checked."""
        out = self._call(name, fn, *(readonly(a) if isinstance(a, np.ndarray) else a
                                     for a in args))
        return None if out is None else self._vector(name, out, length)

    # -- plumbing ------------------------------------------------------------------------------
    def _prepare(self) -> None:
        self.operator.bound_to = self._binding
        self.call_operator("operator.prepare", self.operator.prepare, self.theta_operator)

    def call_operator(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call an operator callback ``fn(*args)`` at this θ (``prepare`` first if another θ
        was prepared since); a failure is reported by the policy (then None is returned)."""
        if self.operator.bound_to is not self._binding:
            self._prepare()
        return self._call(name, fn, *args)

    def _call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # reported by the policy (serial: raised at once)
            self.policy.record(name, callback_failure(name, exc))
            return None

    def _product(self, name: str, fn: Callable[..., Any], x: np.ndarray,
                 check_finite: bool) -> np.ndarray:
        """An operator product: shape and dtype checked without a pass over the data."""
        x = readonly(x)
        y = self.call_operator(name, fn, self.theta_operator, x)
        if check_finite:
            return self._vector(name, y, self.n_local, state=True)
        if type(y) is not np.ndarray or y.shape != (self.n_local,) or y.dtype != self.dtype:
            y = self._vector(name, y, self.n_local, check_finite=False, state=True)
        if self.check_products and not math.isfinite(float(np.sum(y))) \
                and math.isfinite(float(np.sum(x))):
            bad = np.flatnonzero(~np.isfinite(y))
            self.policy.record(name, NonFiniteError(
                name, f"returned {bad.size} non-finite value(s) (NaN or Inf) from finite "
                      f"inputs, first at local index {bad[0]}"))
        return y

    def _vector(self, name: str, value: Any, length: int, *, check_finite: bool = True,
                state: bool = False) -> np.ndarray:
        """A validated vector, or NaN after reporting the failure (when the policy records).

        ``state``: a vector like x (of the problem's dtype); otherwise one like θ (real: of a
        complex problem's θ-like outputs, such as λᴴ(∂A/∂θ)x, the real part is taken, the
        convention of docs/method.md).
        """
        if value is None and self.policy.failed:
            return np.full(length, math.nan)
        try:
            if state and self.dtype.kind == "c":
                return as_vector(value, name, length, dtype=self.dtype,
                                 check_finite=check_finite)
            if self.dtype.kind == "c" and np.iscomplexobj(value):
                value = np.real(value)
            return as_real_vector(value, name, length, check_finite=check_finite)
        except CallbackError as exc:
            self.policy.record(name, exc)
            return np.full(length, math.nan)


def _combine(terms: list[tuple[np.ndarray | None, float]], length: int) -> np.ndarray:
    """``Σ sign·term`` over the terms that are not None (identically zero)."""
    out = np.zeros(length)
    for term, sign in terms:
        if term is not None:
            out += sign * term
    return out

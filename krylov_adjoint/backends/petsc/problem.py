"""A distributed adjoint problem: operator, right-hand side and objective with local callbacks.

Each rank owns a contiguous block of x (the operator's :class:`Layout`) and a block of θ (the
problem's). Callbacks run on every rank at once and see *local* numpy arrays: views of the
PETSc vectors' owned parts, or ghosted arrays when a :class:`Halo` is declared, so that a
stencil needs no communication of its own. All communication (ghost exchanges, reductions)
is done by the library outside user code; that is what lets a failure on one rank be reported
on every rank instead of deadlocking them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..._checks import as_real_scalar, as_real_vector
from ...errors import CallbackError, NonFiniteError
from ...problem.objective import Objective
from ...problem.operator import check_operator_callbacks
from ...problem.rhs import RightHandSide
from ...problem.structure import Structure
from .collective import ErrorGuard
from .layout import Layout

__all__ = ["Halo", "DistributedOperator", "DistributedProblem", "BoundProblem"]

ARRAYS, VECS = "arrays", "vecs"


class Halo(Protocol):
    """Ghost exchange for a distributed vector (see :class:`~.dmda.StructuredGrid`).

    ``exchange(vec, slot)`` is collective: it scatters the owned values of ``vec`` and its
    ghosts into a local work array kept under the name ``slot`` (so that several ghosted
    vectors can be alive at once) and returns that array read-only, in the shape the
    callbacks expect (e.g. the ghosted box of a structured grid).
    """

    def exchange(self, vec: Any, slot: str) -> np.ndarray:
        """The ghosted local array of ``vec`` (collective)."""


class DistributedOperator:
    """A square operator A(θ) on distributed vectors, known through local callbacks.

    Parameters
    ----------
    matvec : callable ``(theta, x) -> y``
        This rank's rows of ``A(θ) x``: an array of the local size. ``theta`` and ``x`` are
        the owned parts, or ghosted arrays when ``theta_halo`` / ``halo`` are given.
    layout : Layout, optional
        The layout of x. Or give ``n`` and/or ``n_local`` (``Layout.create`` semantics).
    rmatvec : callable ``(theta, y) -> Aᵀy``, optional
        Required unless ``structure`` is ``"symmetric"`` or ``"spd"``.
    vjp : callable ``(theta, x, lam) -> lamᵀ(∂A/∂θ)x``
        This rank's *owned* entries of the θ-gradient contribution (compute them from ghosted
        ``x`` and ``lam`` when a halo is declared). Required for gradients unless
        ``depends_on_theta=False``.
    jvp : callable ``(theta, x, dtheta) -> (∂A/∂θ·dθ)x``, optional
        This rank's rows; enables forward mode. ``dtheta`` is ghosted like ``theta``.
    structure : {"general", "symmetric", "spd"}
    assemble : callable ``theta -> rows``, optional
        A(θ) (or an approximation) to build the preconditioner from: this rank's rows as a
        scipy.sparse matrix of shape (n_local, N) with *global* column indices, a CSR triple
        ``(indptr, indices, data)`` of the same, or a ready PETSc AIJ ``Mat``.
    prepare : callable ``theta -> None``, optional
        Called on every rank once per new θ, before the other callbacks (cache θ-dependent
        coefficients there). ``theta`` is ghosted when ``theta_halo`` is given.
    halo, theta_halo : Halo, optional
        Ghost exchanges applied by the library to x-like inputs (x, λ, y) and to θ-like
        inputs (θ, dθ) before calling the array callbacks.
    interface : {"arrays", "vecs"}
        ``"vecs"`` for advanced users: callbacks receive petsc4py Vecs and write their result
        into a last ``out`` Vec (``matvec(theta, x, out)``, ``vjp(theta, x, lam, out)``,
        ``jvp(theta, x, dtheta, out)``; ``assemble(theta)`` and ``prepare(theta)`` get the θ
        Vec) and do their own communication. An exception raised *between* two collective
        calls of such a callback can still deadlock; prefer ``"arrays"`` with a halo.
    depends_on_theta : bool
        False for an operator independent of θ (no ``vjp`` needed).

    Examples
    --------
    ``A(θ) = diag(θ)`` with x and θ distributed alike:

    >>> import numpy as np
    >>> from krylov_adjoint.backends.petsc import DistributedOperator, Layout
    >>> op = DistributedOperator(lambda th, x: th * x, layout=Layout.create(4),
    ...                          structure="spd", vjp=lambda th, x, lam: lam * x)
    >>> op.structure.name, op.layout.size
    ('SPD', 4)
    """

    def __init__(self, matvec: Callable[..., Any], *, layout: Layout | None = None,
                 n: int | None = None, n_local: int | None = None, comm: Any = None,
                 rmatvec: Callable[..., Any] | None = None,
                 vjp: Callable[..., Any] | None = None, jvp: Callable[..., Any] | None = None,
                 structure: str | Structure = "general",
                 assemble: Callable[..., Any] | None = None,
                 prepare: Callable[..., Any] | None = None, halo: Halo | None = None,
                 theta_halo: Halo | None = None, interface: str = ARRAYS,
                 depends_on_theta: bool = True) -> None:
        self.structure = Structure.coerce(structure)
        if interface not in (ARRAYS, VECS):
            raise ValueError(f"interface must be 'arrays' or 'vecs', got {interface!r}")
        rmatvec = check_operator_callbacks(
            self.structure, matvec, rmatvec, vjp, depends_on_theta,
            {"jvp": jvp, "assemble": assemble, "prepare": prepare},
            constant_hint="pass depends_on_theta=False")
        self.layout = layout if layout is not None else Layout.create(n, n_local, comm=comm,
                                                                      name="x")
        self._matvec, self._rmatvec, self._vjp, self._jvp = matvec, rmatvec, vjp, jvp
        self._assemble, self._prepare = assemble, prepare
        self.halo, self.theta_halo = halo, theta_halo
        self.interface = interface
        self.depends_on_theta = depends_on_theta
        self.symmetric_rmatvec = rmatvec is matvec
        self._prepared_for: Any = None

    @property
    def has_assembled(self) -> bool:
        """True when an assembled matrix is available to build preconditioners from."""
        return self._assemble is not None

    @property
    def has_jvp(self) -> bool:
        """True when forward mode is available for this operator."""
        return self._jvp is not None or not self.depends_on_theta


class DistributedProblem:
    """``A(θ) x = b(θ)`` and ``J(x, θ)`` with x and θ distributed over the ranks.

    Parameters
    ----------
    operator : DistributedOperator
    rhs : RightHandSide or array
        b(θ) with *local* semantics: a fixed array is this rank's part of b; a callable
        ``value(theta)`` returns this rank's part from this rank's θ, and its ``vjp(theta,
        lam)`` this rank's owned part of λᵀ∂b/∂θ.
    objective : Objective
        J with local semantics: ``value(x, theta)`` returns this rank's *contribution* (the
        library sums over ranks), ``grad_x`` and ``grad_theta`` this rank's parts. The
        ready-made :class:`~krylov_adjoint.LinearFunctional`,
        :class:`~krylov_adjoint.LeastSquaresMisfit` and :class:`~krylov_adjoint.Tikhonov`
        work as they are when given this rank's data (and an observation operator or ``L``
        acting on owned entries only).
    n_params, params_local : int, optional
        Global and/or local size of θ; or give ``theta_layout``.
    theta_layout : Layout, optional

    Examples
    --------
    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> from krylov_adjoint.backends.petsc import DistributedOperator, DistributedProblem
    >>> op = DistributedOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                          vjp=lambda th, x, lam: lam * x)
    >>> n_local = op.layout.local_size
    >>> problem = DistributedProblem(op, np.ones(n_local),
    ...                              ka.LinearFunctional(np.ones(n_local)),
    ...                              theta_layout=op.layout)
    >>> problem.n, problem.n_params
    (3, 3)
    """

    def __init__(self, operator: DistributedOperator, rhs: Any, objective: Objective, *,
                 n_params: int | None = None, params_local: int | None = None,
                 theta_layout: Layout | None = None) -> None:
        if not isinstance(operator, DistributedOperator):
            raise TypeError(f"operator must be a DistributedOperator, got "
                            f"{type(operator).__name__}")
        if not isinstance(rhs, RightHandSide):
            rhs = RightHandSide(rhs)
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be an Objective, got {type(objective).__name__}")
        self.operator, self.rhs, self.objective = operator, rhs, objective
        self.x_layout = operator.layout
        self.comm = self.x_layout.comm
        if theta_layout is None:
            theta_layout = Layout.create(n_params, params_local, comm=self.comm, name="theta")
        self.theta_layout = theta_layout
        self.n, self.n_local = self.x_layout.size, self.x_layout.local_size
        self.n_params, self.params_local = theta_layout.size, theta_layout.local_size
        guard = ErrorGuard(self.comm)
        if not rhs.depends_on_theta:
            with guard.local("rhs", is_input=True):
                as_real_vector(rhs.value(None), "rhs", self.n_local, callback=False)
        guard.checkpoint("the problem definition")

    @property
    def structure(self) -> Structure:
        """The declared structure of A(θ)."""
        return self.operator.structure

    def bind(self, theta: Any, guard: ErrorGuard) -> BoundProblem:
        """The problem at θ (a Vec on :attr:`theta_layout`), ready for solves (collective)."""
        return BoundProblem(self, theta, guard)


class BoundProblem:
    """The problem at one θ: validated, failure-recording callbacks on PETSc vectors.

    Every method is collective (all ranks call it together), never raises on one rank only,
    and records callback failures in ``guard``; the caller runs ``guard.checkpoint`` after.
    A failed vector output is filled with NaN and a failed scalar is NaN.
    """

    def __init__(self, problem: DistributedProblem, theta: Any, guard: ErrorGuard) -> None:
        self.problem, self.guard, self.theta_vec = problem, guard, theta
        op = problem.operator
        self.op = op
        self.vecs = op.interface == VECS
        # private read-only copies: the θ Vec and the halo's work arrays get reused
        self.theta = _frozen(theta.getArray(readonly=True))
        self.theta_op = _frozen(self._ghost(op.theta_halo, theta, "theta"))
        self._prepare()

    def _prepare(self) -> None:
        """Call the operator's ``prepare`` for this θ (again if another θ was prepared since).

        Local: the ghosted θ was exchanged once, at binding.
        """
        op = self.op
        op._prepared_for = self
        if op._prepare is not None:
            self._call("operator.prepare", op._prepare, (self.theta_vec,) if self.vecs
                       else (self.theta_op,))

    def _operator_callback(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]
                           ) -> Any:
        if self.op._prepared_for is not self:
            self._prepare()
        return self._call(name, fn, args)

    # -- the operator ---------------------------------------------------------------
    def matvec(self, x: Any, y: Any) -> None:
        """``y = A(θ) x``."""
        self._apply("operator.matvec", self.op._matvec, x, y, "x")

    def rmatvec(self, x: Any, y: Any) -> None:
        """``y = A(θ)ᵀ x``."""
        name = ("operator.matvec (used as rmatvec: declared symmetric)"
                if self.op.symmetric_rmatvec else "operator.rmatvec")
        self._apply(name, self.op._rmatvec, x, y, "y")

    def _apply(self, name: str, fn: Callable[..., Any], x: Any, y: Any, slot: str) -> None:
        if self.vecs:
            self._vec_call(name, fn, (self.theta_vec, x, y), y)
            return
        xa = self._ghost(self.op.halo, x, slot)
        out = self._operator_callback(name, fn, (self.theta_op, xa))
        self._store(name, out, y, self.problem.n_local, inputs=(xa,))

    def assemble(self) -> Any:
        """This rank's rows of the assembled A(θ) (CSR triple or Mat), None on failure."""
        if self.vecs:
            return self._operator_callback("operator.assemble", self.op._assemble,
                                           (self.theta_vec,))
        return self._operator_callback("operator.assemble", self.op._assemble,
                                       (self.theta_op,))

    # -- right-hand side and objective ------------------------------------------------
    def rhs(self, b: Any) -> None:
        """``b = b(θ)``."""
        rhs = self.problem.rhs
        out = self._call("rhs", rhs.value, (self.theta,))
        self._store("rhs", out, b, self.problem.n_local, check_finite=True)

    def objective_value(self, x: Any) -> float:
        """This rank's contribution to J(x, θ) (NaN on failure)."""
        xa = x.getArray(readonly=True)
        value = self._call("objective.value", self.problem.objective.value, (xa, self.theta))
        if value is None:
            return math.nan
        try:
            return as_real_scalar(value, "objective.value")
        except CallbackError as exc:
            self.guard.record("objective.value", exc)
            return math.nan

    def objective_grad_x(self, x: Any, out: Any) -> None:
        """``out = ∂J/∂x`` (this rank's part)."""
        xa = x.getArray(readonly=True)
        grad = self._call("objective.grad_x", self.problem.objective.grad_x, (xa, self.theta))
        self._store("objective.grad_x", grad, out, self.problem.n_local, check_finite=True)

    # -- derivatives with respect to θ -------------------------------------------------
    def parameter_gradient(self, x: Any, lam: Any, out: Any) -> None:
        """``out = ∂J/∂θ − λᵀ(∂A/∂θ·x) + λᵀ∂b/∂θ`` (this rank's owned part)."""
        p = self.problem
        total = np.zeros(p.params_local)
        xa, lama = x.getArray(readonly=True), lam.getArray(readonly=True)
        direct = self._call("objective.grad_theta", p.objective.grad_theta, (xa, self.theta))
        if direct is not None:
            total += self._checked("objective.grad_theta", direct, p.params_local)
        if self.op.depends_on_theta:
            total -= self._operator_vjp(x, lam)
        if p.rhs.depends_on_theta:
            term = self._call("rhs.vjp", p.rhs.vjp, (self.theta, lama))
            total += self._checked("rhs.vjp", term, p.params_local)
        if not np.isfinite(total).all() and not self.guard.failed:
            self.guard.record("parameter gradient",
                              NonFiniteError("parameter gradient",
                                             "non-finite values (check the vjp callbacks)"))
        out.setArray(total)

    def _operator_vjp(self, x: Any, lam: Any) -> np.ndarray:
        p, name = self.problem, "operator.vjp"
        if self.vecs:
            work = p.theta_layout.create_vec()
            self._vec_call(name, self.op._vjp, (self.theta_vec, x, lam, work), work)
            out = work.getArray(readonly=True).copy()
            work.destroy()
            return out
        xa = self._ghost(self.op.halo, x, "x")
        lama = self._ghost(self.op.halo, lam, "lam")
        return self._checked(name, self._operator_callback(name, self.op._vjp,
                                                           (self.theta_op, xa, lama)),
                             p.params_local)

    def operator_jvp(self, x: Any, dtheta: Any, out: Any) -> None:
        """``out = (∂A/∂θ·dθ)x``, zero for an operator independent of θ."""
        name = "operator.jvp"
        if not self.op.depends_on_theta:
            out.set(0.0)
        elif self.op._jvp is None:
            self.guard.record(name, "operator.jvp was not supplied: forward mode needs it")
            out.set(math.nan)
        elif self.vecs:
            self._vec_call(name, self.op._jvp, (self.theta_vec, x, dtheta, out), out)
        else:
            xa = self._ghost(self.op.halo, x, "x")
            da = self._ghost(self.op.theta_halo, dtheta, "dtheta")
            self._store(name, self._operator_callback(name, self.op._jvp,
                                                      (self.theta_op, xa, da)),
                        out, self.problem.n_local, check_finite=True)

    def rhs_jvp(self, dtheta: Any, out: Any) -> None:
        """``out = (∂b/∂θ)dθ``, zero for a fixed b."""
        rhs = self.problem.rhs
        if not rhs.depends_on_theta:
            out.set(0.0)
            return
        da = dtheta.getArray(readonly=True)
        self._store("rhs.jvp", self._call("rhs.jvp", rhs.jvp, (self.theta, da)), out,
                    self.problem.n_local, check_finite=True)

    # -- plumbing ----------------------------------------------------------------------
    def _ghost(self, halo: Halo | None, vec: Any, slot: str) -> np.ndarray:
        """Collective: the ghosted array of ``vec`` (its owned part without a halo)."""
        if halo is None:
            return vec.getArray(readonly=True)
        return halo.exchange(vec, slot)

    def _call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # reported on every rank at the next checkpoint
            self.guard.record(name, CallbackError(name, f"raised {type(exc).__name__}: {exc}"))
            return None

    def _vec_call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
                  out: Any) -> None:
        """Call a ``"vecs"`` callback (always: it may communicate) and check its contract."""
        if self.op._prepared_for is not self:
            self._prepare()
        failed_before = self.guard.failed
        try:
            returned = fn(*args)
        except Exception as exc:
            self.guard.record(name, CallbackError(name, f"raised {type(exc).__name__}: {exc}"))
        else:
            if returned is not None:
                self.guard.record(name, CallbackError(
                    name, "a 'vecs' callback writes into its last argument and returns None, "
                          f"got {type(returned).__name__}"))
        if self.guard.failed and not failed_before:
            out.set(math.nan)

    def _checked(self, name: str, value: Any, length: int) -> np.ndarray:
        """A validated local vector, or NaNs after recording the failure."""
        if value is None:
            if not self.guard.failed:
                self.guard.record(name, CallbackError(name, "returned None, expected an "
                                                            f"array of shape ({length},)"))
            return np.full(length, math.nan)
        try:
            return as_real_vector(value, name, length)
        except CallbackError as exc:
            self.guard.record(name, exc)
            return np.full(length, math.nan)

    def _store(self, name: str, value: Any, vec: Any, length: int, *,
               check_finite: bool = False, inputs: tuple[Any, ...] = ()) -> None:
        """Copy a callback's output into ``vec``; NaN and a recorded failure if unusable.

        Outputs of operator applications are checked for non-finite values with one cheap
        reduction (inputs that already held NaN, e.g. propagated by a failed solve, do not
        blame the callback).
        """
        if value is None:
            if not self.guard.failed:
                self.guard.record(name, CallbackError(name, "returned None, expected an "
                                                            f"array of shape ({length},)"))
            vec.set(math.nan)
            return
        if type(value) is not np.ndarray or value.shape != (length,) \
                or value.dtype != np.float64:
            try:
                value = as_real_vector(value, name, length, check_finite=False)
            except CallbackError as exc:
                self.guard.record(name, exc)
                vec.set(math.nan)
                return
        if not math.isfinite(float(np.sum(value))) and not np.isfinite(value).all():
            if check_finite or all(math.isfinite(float(np.sum(v))) for v in inputs):
                bad = np.flatnonzero(~np.isfinite(value))
                self.guard.record(name, NonFiniteError(
                    name, f"returned {bad.size} non-finite value(s) (NaN or Inf) from finite "
                          f"inputs, first at local index {bad[0]}"))
        vec.setArray(value)


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.array(array, copy=True)
    out.flags.writeable = False
    return out

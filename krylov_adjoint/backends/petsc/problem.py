"""A distributed adjoint problem: operator, right-hand side and objective with local callbacks.

Each rank owns a contiguous block of x (the operator's :class:`Layout`) and a block of θ (the
problem's). Callbacks run on every rank at once and see *local* numpy arrays: views of the
PETSc vectors' owned parts, or ghosted arrays when a :class:`Halo` is declared, so that a
stencil needs no communication of its own. All communication (ghost exchanges, reductions)
is done by the library outside user code; that is what lets a failure on one rank be reported
on every rank instead of deadlocking them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..._checks import as_real_vector
from ...problem.objective import Objective
from ...problem.operator import (
    OperatorCallbacks,
    as_field,
    as_nullspace,
    check_operator_callbacks,
)
from ...problem.rhs import RightHandSide
from ...problem.structure import Structure
from ._import import mpi, petsc
from .collective import ErrorGuard
from .layout import Layout

__all__ = ["Halo", "DistributedOperator", "DistributedProblem"]

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


class DistributedOperator(OperatorCallbacks):
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
    vjp_jvp : callable ``(theta, x, lam, dtheta) -> ∂/∂θ[lamᵀ(∂A/∂θ)x]·dθ``, optional
        This rank's owned entries, like ``vjp``; for Hessian-vector products.
    jvp_transpose : callable ``(theta, y, dtheta) -> (∂A/∂θ·dθ)ᵀy``, optional
        This rank's rows, like ``jvp``; defaults to ``jvp`` when declared symmetric. These two
        are array callbacks only: with ``interface="vecs"`` they are refused
        (:class:`ValueError`).
    nullspace : Nullspace, array or callable, optional
        For a singular A(θ): this rank's rows of its nullspace vectors (and of those of
        A(θ)ᵀ), as on :class:`~krylov_adjoint.ParametricOperator`; a callable receives θ as
        the operator's callbacks do (ghosted with a θ halo). Given to PETSc as the operators'
        ``MatNullSpace`` and to GAMG as its near-nullspace.

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
                 depends_on_theta: bool = True, vjp_jvp: Callable[..., Any] | None = None,
                 jvp_transpose: Callable[..., Any] | None = None,
                 nullspace: Any = None, dtype: Any = np.float64) -> None:
        self.structure = Structure.coerce(structure)
        self.dtype = as_field(dtype)
        if interface not in (ARRAYS, VECS):
            raise ValueError(f"interface must be 'arrays' or 'vecs', got {interface!r}")
        if interface == VECS and (vjp_jvp is not None or jvp_transpose is not None):
            raise ValueError("vjp_jvp and jvp_transpose are array callbacks only: pass them "
                             "with interface='arrays' (and a halo for ghosted inputs)")
        rmatvec = check_operator_callbacks(
            self.structure, matvec, rmatvec, vjp, depends_on_theta,
            {"jvp": jvp, "assemble": assemble, "prepare": prepare, "vjp_jvp": vjp_jvp,
             "jvp_transpose": jvp_transpose},
            constant_hint="pass depends_on_theta=False")
        self.layout = layout if layout is not None else Layout.create(n, n_local, comm=comm,
                                                                      name="x")
        self._matvec, self._rmatvec, self._vjp, self._jvp = matvec, rmatvec, vjp, jvp
        self._vjp_jvp, self._jvp_transpose = vjp_jvp, jvp_transpose
        self._assemble, self._prepare = assemble, prepare
        self.halo, self.theta_halo = halo, theta_halo
        self.interface = interface
        self.depends_on_theta = depends_on_theta
        self.nullspace = as_nullspace(nullspace)

    @property
    def uses_vecs(self) -> bool:
        """True for the ``"vecs"`` interface (callbacks on PETSc Vecs)."""
        return self.interface == VECS


class DistributedProblem:
    """``A(θ) x = b(θ)`` and ``J(θ, x)`` with x and θ distributed over the ranks.

    Parameters
    ----------
    operator : DistributedOperator
    rhs : RightHandSide or array
        b(θ) with *local* semantics: a fixed array is this rank's part of b; a callable
        ``value(theta)`` returns this rank's part from this rank's θ, and its ``vjp(theta,
        lam)`` this rank's owned part of λᵀ∂b/∂θ.
    objective : Objective
        J with local semantics: ``J(theta, x)`` returns this rank's *contribution* (the
        library sums over ranks), ``dJ_dx`` and ``dJ_dtheta`` this rank's parts. The
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

    @property
    def dtype(self) -> np.dtype:
        """float64, or complex128 for a complex system (declared on the operator)."""
        return self.operator.dtype


class MatrixOperator(DistributedOperator):
    """A :class:`DistributedOperator` that holds A(θ) as the assembled PETSc Mat ``_mat``
    (set by the subclass at each θ): products are ``MatMult`` and ``MatMultTranspose``, and
    the preconditioner is built from the same Mat."""

    _mat: Any
    _eliminated: np.ndarray  # this rank's Dirichlet rows (and columns)
    _has_dirichlet: bool  # on any rank

    def _assembled(self, theta_vec: Any) -> Any:
        return self._mat

    def _set_dirichlet(self, indices: Any, layout: Layout, guard: ErrorGuard,
                       name: str) -> np.ndarray:
        """Collective: the Dirichlet rows given as argument ``name``, checked to be owned by
        this rank, sorted and remembered, with whether any rank has some."""
        noun = name.removeprefix("dirichlet_")
        out = np.zeros(0, dtype=np.int64)
        with guard.local(name, is_input=True):
            if indices is not None:
                out = np.unique(np.asarray(indices, dtype=np.int64).ravel())
                outside = (out < layout.start) | (out >= layout.stop)
                if outside.any():
                    raise ValueError(f"{name} must be {noun} owned by this rank "
                                     f"[{layout.start}, {layout.stop}), got {out[outside][0]}")
        guard.checkpoint(f"the check of {name}")
        self._eliminated = out
        self._has_dirichlet = bool(layout.comm.allreduce(int(out.size), op=mpi().SUM))
        return out

    def _dirichlet_masks(self, layout: Layout, ghosted: Any) -> tuple[np.ndarray, np.ndarray]:
        """Collective: 1 at free rows, 0 at Dirichlet ones, on this rank's rows and on the
        indices of ``ghosted`` (a :class:`~.ghosts.GhostedIndices`)."""
        row_mask = np.ones(layout.local_size)
        row_mask[self._eliminated - layout.start] = 0.0
        indicator = layout.create_vec()
        indicator.setArray(row_mask)
        ghosted_mask = ghosted.gather(indicator)
        indicator.destroy()
        return row_mask, ghosted_mask

    def _eliminate(self) -> None:
        """Collective: ``MatZeroRowsColumns`` on the Dirichlet rows (unit diagonal)."""
        if self._has_dirichlet:
            self._mat.zeroRowsColumns(self._eliminated.astype(petsc().IntType), diag=1.0)

    def _mult(self, theta_vec: Any, x: Any, out: Any) -> None:
        self._mat.mult(x, out)

    def _mult_transpose(self, theta_vec: Any, y: Any, out: Any) -> None:
        self._mat.multTranspose(y, out)

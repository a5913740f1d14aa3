"""The gradient engine on PETSc/MPI: the serial :class:`~krylov_adjoint.AdjointSolver`'s API."""

from __future__ import annotations

from typing import Any

from ...adjoint.engine import GradientEngine, choose_method
from ...krylov.recycling import validate_recycle
from ...krylov.stopping import Monitor, validate_tolerances
from .backend import PC_ALIASES, PetscBackend
from .problem import DistributedProblem

__all__ = ["PetscAdjointSolver", "PC_ALIASES"]


def _backend_state(name: str, doc: str) -> property:
    """A read-only view of the PETSc backend's attribute ``name``."""
    return property(lambda solver: getattr(solver.backend, name), doc=doc)


class PetscAdjointSolver(GradientEngine):
    """J(θ), dJ/dθ and directional derivatives of a :class:`DistributedProblem` with PETSc.

    The parallel counterpart of :class:`~krylov_adjoint.AdjointSolver`, with the same
    arguments and results. One :meth:`gradient` call is collective: it solves
    ``A(θ) x = b(θ)`` with a KSP on the shell operator, preconditioned from the assembled
    matrix (GAMG by default), then ``A(θ)ᵀ λ = ∂J/∂x`` with the user's ``rmatvec`` and the
    primal preconditioner transposed (no second set-up: see ``adjoint_pc``), and returns
    ``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)`` as a distributed vector.

    Parameters
    ----------
    problem : DistributedProblem
    method : str
        ``"auto"`` (CG for a problem declared SPD, else GMRES), ``"gmres"``, ``"cg"``,
        ``"bicgstab"`` or any PETSc KSP type. ``-<prefix>primal_ksp_type`` overrides it.
    preconditioner : str
        ``"auto"`` (GAMG with an ``assemble`` callback, else none), ``"amg"``/``"gamg"``,
        ``"hypre"`` (when the PETSc build has it), ``"jacobi"``, ``"bjacobi"``, ``"none"`` or
        any PETSc PC type; ``-<prefix>primal_pc_type`` overrides it.
    options : dict, optional
        Extra PETSc options for the primal solve, as defaults under its prefix (e.g.
        ``{"pc_gamg_threshold": 0.02, "mg_levels_ksp_max_it": 3}``); the command line wins.
        ``{"matptap_via": "allatonce"}`` (GAMG's Galerkin products without their
        intermediate: less memory, a slower set-up) holds during the set-up only.
    rtol, atol, adjoint_rtol, adjoint_atol, maxiter, restart, warm_start, raise_on_failure,
    rebuild_factor, monitor, check_transpose, check_gradient, accuracy, error_estimate
        As in :class:`~krylov_adjoint.AdjointSolver` (the same engine decides set-ups,
        warm starts and checks); the stopping rule is the serial one,
        ``‖b − A x‖ ≤ max(rtol‖b‖, atol)`` on the unpreconditioned residual.
    reuse_preconditioner : bool or None
        Keep the preconditioner across θ (rebuilt per ``rebuild_factor``), as the serial
        solver does. False sets it up again for every new θ: once per θ, shared by the
        primal and adjoint solves either way. None: True, except for the factorisations
        ``"lu"`` and ``"cholesky"`` (on several ranks they need a parallel direct solver in the
        PETSc build, MUMPS or SuperLU_dist; refused clearly otherwise).
    adjoint_pc : {"auto", "shared", "transpose", "explicit"}
        How the adjoint solve is preconditioned from the primal set-up (see
        :mod:`krylov_adjoint.backends.petsc.adjoint_pc`). Giving ``-<prefix>adjoint_pc_type``
        on the command line instead builds an independent PC for the adjoint from the
        explicit transpose of the assembled matrix.
    options_prefix : str
        Prefix of every solve's options: ``<prefix>primal_``, ``<prefix>adjoint_``,
        ``<prefix>tangent_``.
    check_residual : bool
        Recompute the true residual at the end of each solve (one operator application), as
        the serial backend does; it replaces the last entry of ``residual_norms``.
    recycle : int
        k > 0 (smaller than N): the primal and the adjoint solve each start from the
        minimal-residual combination of their last k solutions and the warm start, for the
        current A(θ) (:mod:`krylov_adjoint.backends.petsc.recycling`: at most k + 3
        operator products per solve, PETSc Vec and Mat operations, PETSc's own KSP after). Not
        ``KSPGUESSPOD``/``fischer``, which reset whenever the operator changes and then
        discard the warm start, nor ``PCDEFLATION``, whose space is fixed at the
        preconditioner's set-up (see that module). It does not depend on the preconditioner,
        so it survives set-ups unchanged; the tangent solves do not recycle. Each solve's
        ``extra`` reports ``recycled_dimension`` and ``iterations_saved`` (against a cold
        start, an estimate).

    Examples
    --------
    ``A(θ) = diag(θ)``, ``b = 1``, ``J = sum(x)``, so ``dJ/dθ = −1/θ²`` (on any number of
    ranks):

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> from krylov_adjoint.backends.petsc import (DistributedOperator, DistributedProblem,
    ...                                             PetscAdjointSolver)
    >>> op = DistributedOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                          vjp=lambda th, x, lam: lam * x)
    >>> m = op.layout.local_size
    >>> problem = DistributedProblem(op, np.ones(m), ka.LinearFunctional(np.ones(m)),
    ...                              theta_layout=op.layout)
    >>> solver = PetscAdjointSolver(problem, rtol=1e-12, preconditioner="none")
    >>> theta = op.layout.local_part(np.array([1.0, 2.0, 4.0]))
    >>> result = solver.gradient(theta)
    >>> np.round(result.gather_gradient(root=None), 6)
    array([-1.    , -0.25  , -0.0625])
    >>> result.primal.reason.name, result.adjoint_solve.reason.name
    ('CONVERGED_RTOL', 'CONVERGED_RTOL')
    >>> solver.destroy()
    """

    def __init__(self, problem: DistributedProblem, *, method: str = "auto",
                 preconditioner: str | None = "auto", options: dict[str, Any] | None = None,
                 rtol: float = 1e-8, atol: float = 0.0, adjoint_rtol: float | None = None,
                 adjoint_atol: float | None = None, maxiter: int | None = None,
                 restart: int = 30, warm_start: bool = True, raise_on_failure: bool = True,
                 rebuild_factor: float | None = 1.5, reuse_preconditioner: bool | None = None,
                 monitor: Monitor | None = None, adjoint_pc: str = "auto",
                 options_prefix: str = "ka_", check_residual: bool = True,
                 check_transpose: bool = True, check_gradient: bool = True,
                 accuracy: Any = "fixed", error_estimate: bool = True,
                 recycle: int = 0) -> None:
        if not isinstance(problem, DistributedProblem):
            raise TypeError(f"problem must be a DistributedProblem, got {type(problem).__name__}")
        chosen = choose_method(method, problem.structure, known_methods=None)
        adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
        adjoint_atol = atol if adjoint_atol is None else adjoint_atol
        limit = validate_tolerances(rtol, atol, maxiter, problem.n)
        validate_tolerances(adjoint_rtol, adjoint_atol, maxiter, problem.n)
        backend = PetscBackend(problem, method=chosen, preconditioner=preconditioner,
                               options=options, rtol=rtol, atol=atol, adjoint_rtol=adjoint_rtol,
                               adjoint_atol=adjoint_atol, maxiter=limit, restart=restart,
                               monitor=monitor, adjoint_pc=adjoint_pc,
                               options_prefix=options_prefix, check_residual=check_residual,
                               recycle=validate_recycle(recycle, problem.n))
        super().__init__(backend, method=chosen, rtol=rtol, atol=atol,
                         adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, maxiter=maxiter,
                         restart=restart, warm_start=warm_start,
                         raise_on_failure=raise_on_failure, rebuild_factor=rebuild_factor,
                         reuse_preconditioner=reuse_preconditioner, monitor=monitor,
                         check_transpose=check_transpose, check_gradient=check_gradient,
                         accuracy=accuracy, error_estimate=error_estimate,
                         recycle=recycle, known_methods=None)
        self.problem = problem
        self.comm = problem.comm

    @property
    def primal_ksp(self) -> Any:
        """The primal solve's petsc4py KSP (prefix ``<prefix>primal_``)."""
        return self.backend.primal.ksp

    @property
    def adjoint_ksp(self) -> Any:
        """The adjoint solve's petsc4py KSP (prefix ``<prefix>adjoint_``)."""
        return self.backend.adjoint.ksp

    pc_type = _backend_state("pc_type", "The primal PC type (after the command line).")
    adjoint_pc_mode = _backend_state(
        "adjoint_pc_mode", 'How the adjoint solve is preconditioned ("shared", "transpose", ...).')
    adjoint_setups = _backend_state(
        "adjoint_setups", "How many times the adjoint KSP's preconditioner was prepared.")

    def destroy(self) -> None:
        """Free the PETSc objects (collective)."""
        self.backend.destroy()

    def __enter__(self) -> PetscAdjointSolver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

"""The serial solver: the gradient engine on numpy arrays."""

from __future__ import annotations

from typing import Any

from ..krylov.stopping import Monitor
from ..problem.problem import AdjointProblem
from .engine import GradientEngine

__all__ = ["AdjointSolver"]


class AdjointSolver(GradientEngine):
    """Objective, gradient and directional derivatives of an :class:`AdjointProblem`.

    One call of :meth:`gradient` solves ``A(θ) x = b(θ)``, then ``A(θ)ᵀ λ = ∂J/∂x`` with the
    same Krylov method and the *transpose* of the same preconditioner (no second set-up), and
    returns ``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)`` through the user's VJPs.

    Parameters
    ----------
    problem : AdjointProblem
    method : {"auto", "gmres", "cg", "bicgstab", "cocg"}
        ``"auto"`` is CG for a problem declared SPD, GMRES otherwise (and GMRES also when
        the preconditioner is known not to be symmetric, e.g. an AMG F-cycle). CG is refused
        unless the problem is declared ``"spd"``, or with a non-symmetric preconditioner;
        COCG (for a complex symmetric system) unless it is declared ``"symmetric"``.
    preconditioner : str, Preconditioner, LinearOperator, MultilevelSolver, callable or None
        ``"auto"`` (AMG when the operator has an ``assemble`` callback, else none), ``"amg"``,
        ``"ilu"``, ``"jacobi"``, ``"lu"`` (a sparse direct factorisation: both solves in one
        iteration at its θ), ``"none"``/None, a ready preconditioner object with
        ``apply``/``apply_transpose``, a scipy ``LinearOperator`` with ``matvec`` and
        ``rmatvec`` (its ``rmatvec`` is the transpose), a pyamg ``MultilevelSolver`` (its
        hierarchy applied with the library's transposed cycle), or a callable
        ``A -> Preconditioner``. Checked when the solver is made
        (:func:`~krylov_adjoint.precond.resolve_preconditioner`).
    preconditioner_options : dict, optional
        Keyword arguments of the preconditioner (e.g. ``{"method": "air"}`` for AMG); unknown
        names are refused when the solver is made.
    rtol, atol : float
        Primal stopping rule ``‖b − A x‖ ≤ max(rtol‖b‖, atol)`` on the true residual, as in
        scipy.
    adjoint_rtol, adjoint_atol : float, optional
        The same for ``‖∂J/∂x − Aᵀλ‖``; default to ``rtol`` and ``atol``.
    maxiter : int, optional
        Per solve; default ``min(10 N, 10000)``, at least 100.
    restart : int
        GMRES restart length.
    warm_start : bool
        Start each solve from the previous call's x and λ (useful in optimisation loops).
    raise_on_failure : bool
        Raise :class:`~krylov_adjoint.ConvergenceError` (carrying the :class:`SolveResult`)
        when a solve does not converge. With False the result is returned and its solves'
        ``reason`` tells; its gradient must then not be trusted.
    rebuild_factor : float or None
        When a primal solve with the kept preconditioner needs more than this factor times
        what a cold start would need at the convergence rate measured right after its set-up
        (plus one), or fails, the preconditioner is set
        up again at the current θ and the solve continued, within the same call
        (:class:`~krylov_adjoint.adjoint.reuse.PreconditionerReuse`); None never rebuilds
        automatically.
    reuse_preconditioner : bool or None
        Keep the preconditioner across θ (rebuilt per ``rebuild_factor``). False sets it up
        again for every new θ, e.g. in topology optimisation where A changes a lot per step:
        once per θ, shared by the primal and adjoint solves either way. None (the default):
        True, except for ``"lu"``, a factorisation of A(θ) itself (True lags it).
    monitor : callable ``(phase, iteration, residual_norm)``, optional
        Called at every Krylov iteration of every solve; ``phase`` is ``"primal"``,
        ``"adjoint"`` or ``"tangent"``.
    check_transpose : bool
        At every new θ, test the declared transpose with random u, v: ``uᵀ(A v)`` against
        ``vᵀ(Aᵀ u)`` (two operator products), and, for an operator declared symmetric, the
        assembled matrix at every preconditioner set-up. A mismatch raises
        :class:`~krylov_adjoint.CallbackError` instead of returning a wrong gradient.
    check_gradient : bool
        At the first gradient, and when the reuse rule has to set the preconditioner up again
        within a call (a failed or slowed solve), compare each derivative callback
        (``operator.vjp``, ``rhs.vjp``, ``objective.grad_theta``) with a central difference of
        its term of the Lagrangian along one random dθ (two evaluations of A x, b and J, no
        solve); a wrong sign or scale raises :class:`~krylov_adjoint.CallbackError` naming it.
        Turn it off for a problem that is not differentiable at θ.
    accuracy : {"fixed", "adaptive"}, float or AccuracyTarget
        ``"fixed"``: both solves to ``rtol``/``adjoint_rtol``. Otherwise the tolerances are
        chosen per call so that the estimated gradient error is at most ``gradient_rtol``
        times ‖dJ/dθ‖ (``"adaptive"``: 1e-2; a float: that value), never tighter than
        ``rtol``/``adjoint_rtol``; :meth:`gradient` takes a per-call target too. See
        :mod:`krylov_adjoint.adjoint.accuracy` and docs/method.md.
    error_estimate : bool
        Give every gradient its certificate (``result.error_estimate``: the dual-weighted
        residual λᵀr and the estimated gradient error), at the price of two short correction
        solves (1–2 iterations each with AMG) and one more evaluation of the VJPs.
    recycle : int
        Keep this many directions (k ≈ 10–30; 0, the default, turns recycling off) from each
        solve to deflate the next: GCRO-DR for ``"gmres"``, deflated CG for ``"cg"``
        (:mod:`krylov_adjoint.krylov.recycling`); ``"bicgstab"`` does not recycle. The
        primal and the adjoint solves renew their spaces (one space for both when A and M
        are symmetric), re-orthogonalised against A(θ) at every new θ and after every new
        set-up of the preconditioner; warm starts are projected on them. Each solve's
        ``extra`` reports ``recycled_dimension`` and ``iterations_saved`` (against a cold
        start, an estimate: :mod:`krylov_adjoint.krylov.recycling`).
        Must be smaller than N.

    Examples
    --------
    ``A(θ) = diag(θ)``, ``b = 1``, ``J = sum(x)``, so ``dJ/dθ = −1/θ²``:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                            vjp=lambda th, x, lam: lam * x)
    >>> problem = ka.AdjointProblem(op, np.ones(3), ka.LinearFunctional(np.ones(3)),
    ...                             n_params=3)
    >>> result = ka.AdjointSolver(problem, rtol=1e-12).gradient(np.array([1.0, 2.0, 4.0]))
    >>> np.round(result.gradient, 6)
    array([-1.    , -0.25  , -0.0625])
    >>> result.primal.reason.name, result.adjoint_solve.reason.name
    ('CONVERGED_RTOL', 'CONVERGED_RTOL')
    """

    def __init__(self, problem: AdjointProblem, *, method: str = "auto",
                 preconditioner: Any = "auto", preconditioner_options: dict | None = None,
                 rtol: float = 1e-8, atol: float = 0.0, adjoint_rtol: float | None = None,
                 adjoint_atol: float | None = None, maxiter: int | None = None,
                 restart: int = 30, warm_start: bool = True, raise_on_failure: bool = True,
                 rebuild_factor: float | None = 1.5, reuse_preconditioner: bool | None = None,
                 monitor: Monitor | None = None, check_transpose: bool = True,
                 check_gradient: bool = True, accuracy: Any = "fixed",
                 error_estimate: bool = True, recycle: int = 0) -> None:
        from ..backends.serial import SerialBackend

        backend = SerialBackend(problem, preconditioner, preconditioner_options)
        super().__init__(backend, method=method, rtol=rtol, atol=atol,
                         adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, maxiter=maxiter,
                         restart=restart, warm_start=warm_start,
                         raise_on_failure=raise_on_failure, rebuild_factor=rebuild_factor,
                         reuse_preconditioner=reuse_preconditioner, monitor=monitor,
                         check_transpose=check_transpose,
                         check_gradient=check_gradient, accuracy=accuracy,
                         error_estimate=error_estimate, recycle=recycle)
        self.problem = problem

    @property
    def preconditioner(self) -> Any:
        """The current preconditioner (None before the first set-up)."""
        return self.backend.M

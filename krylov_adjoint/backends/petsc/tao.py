"""PETSc TAO on a :class:`PetscAdjointSolver`: distributed optimisation with adjoint gradients.

θ stays distributed (TAO's solution Vec has the problem's θ layout); each new θ costs one
primal and one adjoint solve, warm-started, with the preconditioner reused by the engine's
rule. Bound-constrained methods take the bounds as Vecs; Newton methods (``"bnls"``,
``"nls"``) get the Hessian action of the second-order adjoints as a shell matrix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...adapters._progress import IterationRecords
from ...errors import KrylovAdjointError
from ._import import mpi, petsc
from .ksp import set_default_options
from .solver import PetscAdjointSolver

__all__ = ["TaoObjective", "TaoResult", "tao_minimize"]

LOGGER = logging.getLogger("krylov_adjoint.optimize")

#: TAO types that use bounds.
BOUNDED = ("blmvm", "bncg", "bnls", "bntr", "bntl", "bqnls", "bqnkls", "bqnktr", "bqnktl",
           "tron", "gpcg", "bqpip")
#: TAO types that need a Hessian.
NEWTON = ("nls", "ntr", "ntl", "bnls", "bntr", "bntl", "tron", "gpcg")


@dataclass
class TaoResult:
    """What a TAO run ended with (the same on every rank, except this rank's ``theta``).

    Attributes
    ----------
    theta : ndarray
        This rank's part of the final θ.
    theta_vec : petsc4py.PETSc.Vec
        The final θ (a copy owned by the result).
    objective : float
    gradient_norm : float
    iterations : int
    reason : str
        TAO's converged reason, e.g. ``"CONVERGED_GATOL"``.
    converged : bool
        True when the reason is a convergence one (positive).
    n_solves : int
        Gradient evaluations (primal + adjoint solve pairs).
    history, evaluations : list of dict
        As :class:`~krylov_adjoint.adapters.ScipyObjective`'s.
    tao_type : str
    """

    theta: np.ndarray
    theta_vec: Any = field(repr=False)
    objective: float
    gradient_norm: float
    iterations: int
    reason: str
    converged: bool
    n_solves: int
    history: list[dict[str, Any]] = field(repr=False)
    evaluations: list[dict[str, Any]] = field(repr=False)
    tao_type: str = ""

    def gather_theta(self, root: int | None = 0) -> np.ndarray | None:
        """The whole θ on ``root`` (every rank with ``root=None``; collective)."""
        from .layout import Layout

        return Layout.of_vec(self.theta_vec).gather(self.theta, root)


class TaoObjective:
    """A TAO solver on J(θ) and dJ/dθ from a :class:`PetscAdjointSolver` (collective).

    Parameters
    ----------
    solver : PetscAdjointSolver
    method : str
        A TAO type: ``"blmvm"`` (default), ``"lmvm"``, ``"bncg"``, ``"bnls"``, ``"nls"``, ...;
        ``-<prefix>tao_type`` overrides it.
    lower, upper : float, array (this rank's part) or Vec, optional
        Bounds on θ (for the bound-constrained types).
    gatol, grtol : float
        TAO's absolute and relative gradient tolerances.
    maxiter : int
        The iteration limit.
    hessian : bool or None
        Give TAO the exact Hessian action (a shell matrix over
        :meth:`PetscAdjointSolver.hessian_vector_product`). None: when the problem has the
        second-order callbacks (and the ``"arrays"`` interface).
    options : dict, optional
        TAO options as defaults under the prefix (``{"tao_monitor": None}``); the command
        line wins.
    logger : logging.Logger, optional

    Attributes
    ----------
    tao : petsc4py.PETSc.TAO
        Prefix: the solver's (``-ka_tao_type``, ``-ka_tao_monitor``, ``-ka_tao_view`` ...).
    history, evaluations, n_solves
        As :class:`~krylov_adjoint.adapters.ScipyObjective`'s.

    Notes
    -----
    A failure inside an evaluation (a solve that does not converge, a user callback raising
    on some rank) is raised by :meth:`solve` on every rank, as the library's collective
    error, with ``exc.history`` and ``exc.evaluations`` attached: the evaluation itself is
    collective, so every rank leaves TAO in the same call.

    Examples
    --------
    ``A(θ) = diag(θ)``, ``x = 1/θ``, ``J = ½‖x − d‖²`` with ``d = (1/2, 1/4, 1/8)``:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> from krylov_adjoint.backends.petsc import (DistributedOperator, DistributedProblem,
    ...                                             PetscAdjointSolver, TaoObjective)
    >>> op = DistributedOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                          vjp=lambda th, x, lam: lam * x)
    >>> d = op.layout.local_part(np.array([0.5, 0.25, 0.125]))
    >>> problem = DistributedProblem(op, np.ones(d.size), ka.LeastSquaresMisfit(None, d),
    ...                              theta_layout=op.layout)
    >>> solver = PetscAdjointSolver(problem, rtol=1e-12, preconditioner="none")
    >>> tao = TaoObjective(solver, lower=0.1, upper=20.0, gatol=1e-12, grtol=0.0)
    >>> result = tao.solve(op.layout.local_part(np.ones(3)))
    >>> np.round(result.gather_theta(root=None), 5), result.converged
    (array([2., 4., 8.]), True)
    >>> tao.destroy(); solver.destroy()
    """

    def __init__(self, solver: PetscAdjointSolver, *, method: str = "blmvm",
                 lower: Any = None, upper: Any = None, gatol: float = 1e-8,
                 grtol: float = 1e-8, maxiter: int = 200, hessian: bool | None = None,
                 options: dict[str, Any] | None = None,
                 logger: logging.Logger | None = None) -> None:
        if not isinstance(solver, PetscAdjointSolver):
            raise TypeError(f"solver must be a PetscAdjointSolver, got {type(solver).__name__}")
        PETSc = petsc()
        self.solver = solver
        self.problem = solver.problem
        self.comm = solver.comm
        self.logger = LOGGER if logger is None else logger
        self._records = IterationRecords()
        self.history = self._records.history
        self.evaluations: list[dict[str, Any]] = []
        self.n_calls = self.n_solves = 0
        self._last: tuple[np.ndarray, Any] | None = None
        self._error: BaseException | None = None
        self._start = time.perf_counter()
        layout = self.problem.theta_layout
        prefix = solver.backend.prefix
        self.tao = PETSc.TAO().create(comm=self.comm)
        self.tao.setOptionsPrefix(prefix)
        self.tao.setType(method)
        if options:  # a flag such as tao_monitor is given as None
            set_default_options(prefix, {name: "" if value is None else value
                                         for name, value in options.items()})
        self.tao.setTolerances(gatol=gatol, grtol=grtol)
        self.tao.setMaximumIterations(int(maxiter))
        self._gradient = layout.create_vec()
        self.tao.setObjectiveGradient(self._objective_gradient, self._gradient)
        self._bounds = self._bound_vecs(lower, upper)
        if self._bounds is not None:
            self.tao.setVariableBounds(self._bounds)
        problem = self.problem
        available = not problem.operator.uses_vecs and not any(
            part.missing_second_order for part in (problem.operator, problem.rhs,
                                                   problem.objective))
        if hessian and not available:
            raise ValueError("hessian=True needs the second-order callbacks (operator vjp_jvp "
                             "and jvp_transpose, ...) and the 'arrays' interface")
        self.uses_hessian = available if hessian is None else bool(hessian)
        self._hessian: Any = None
        self._theta_h: np.ndarray | None = None
        self._action = _HessianAction(self)
        if self.uses_hessian:
            self._hessian = PETSc.Mat().createPython(
                ((layout.local_size, layout.size), (layout.local_size, layout.size)),
                context=self._action, comm=self.comm)
            self._hessian.setUp()
            self.tao.setHessian(self._hessian_at, self._hessian)
        self.tao.setMonitor(self._monitor)
        self.tao.setFromOptions()
        if self.uses_hessian and self.tao.getType() in NEWTON:
            # the shell Hessian has no entries: precondition its KSP without them
            ksp = self.tao.getKSP()
            if ksp is not None and ksp.getPC().getType() in (None, "", "jacobi", "ilu",
                                                             "icc", "bjacobi"):
                ksp.getPC().setType("none")
        if self.tao.getType() in NEWTON and not self.uses_hessian:
            raise ValueError(f"TAO type {self.tao.getType()!r} needs the Hessian action, and "
                             "this problem lacks second-order callbacks: use 'blmvm', 'lmvm' "
                             "or 'bncg'")

    # -- running ---------------------------------------------------------------------------
    def solve(self, theta0: Any) -> TaoResult:
        """Run TAO from θ₀ (this rank's part: array or Vec); collective."""
        PETSc = petsc()
        layout = self.problem.theta_layout
        x = layout.create_vec()
        self.solver.backend._copy_in(theta0, x, "theta0")
        self.solver.backend.guard.checkpoint("the check of theta0")
        self._error = None
        self.tao.setSolution(x)
        try:
            self.tao.solve()
        except PETSc.Error:
            if self._error is None:
                raise
            error, self._error = self._error, None
            self._attach_records(error)
            raise error from None
        reason = int(self.tao.getConvergedReason())
        f, gnorm, _ = self.tao.getSolutionNorm()
        theta_vec = x.copy()
        x.destroy()
        result = TaoResult(
            theta=theta_vec.getArray(readonly=True), theta_vec=theta_vec, objective=float(f),
            gradient_norm=float(gnorm), iterations=int(self.tao.getIterationNumber()),
            reason=_reason_name(reason), converged=reason > 0, n_solves=self.n_solves,
            history=self.history, evaluations=self.evaluations, tao_type=self.tao.getType())
        self.logger.info("TAO %s finished: %s (%d iterations, %d solves, J = %.10e)",
                         result.tao_type, result.reason, result.iterations, self.n_solves,
                         result.objective)
        return result

    def evaluate(self, theta: Any) -> Any:
        """The :class:`PetscGradientResult` at θ (solved once per distinct θ; collective)."""
        self.n_calls += 1
        local = np.array(theta.getArray(readonly=True) if hasattr(theta, "getArray")
                         else theta, dtype=np.float64)
        same = self._last is not None and np.array_equal(local, self._last[0])
        same = bool(self.comm.allreduce(int(same), op=mpi().MIN))  # one decision for all
        if same:
            return self._last[1]  # type: ignore[index]
        result = self.solver.gradient(local)
        self.n_solves += 1
        if self._last is not None:
            self._last[1].destroy()
        self._last = (local, result)
        self._records.add_result(result)
        record = {"evaluation": self.n_solves, **result.as_dict(),
                  "elapsed": time.perf_counter() - self._start}
        self.evaluations.append(record)
        self.logger.info("evaluation %d: J = %.10e, |g| = %.3e, primal %d it, adjoint %d it, "
                         "preconditioner %s", self.n_solves, result.objective,
                         record.get("gradient_norm", float("nan")), result.primal.iterations,
                         result.adjoint_solve.iterations,
                         "set up" if result.preconditioner_rebuilt else "reused")
        return result

    def destroy(self) -> None:
        """Free the TAO and its Vecs (collective; the solver is left alone)."""
        if self._last is not None:
            self._last[1].destroy()
            self._last = None
        for obj in (self.tao, self._gradient, self._hessian,
                    *(self._bounds or ())):
            if obj is not None:
                obj.destroy()

    # -- TAO's callbacks --------------------------------------------------------------------
    def _objective_gradient(self, tao: Any, x: Any, g: Any) -> float:
        try:
            result = self.evaluate(x)
        except KrylovAdjointError as exc:  # raised on every rank: TAO stops on every rank
            self._error = exc
            raise
        result.gradient_vec.copy(g)
        return float(result.objective)

    def _hessian_at(self, tao: Any, x: Any, H: Any, P: Any) -> None:
        self._theta_h = np.array(x.getArray(readonly=True))
        self._action.offset = 0.0

    def _hessian_product(self, v: Any, out: Any) -> None:
        try:
            product = self.solver.hessian_vector_product(self._theta_h, v)
        except KrylovAdjointError as exc:
            self._error = exc
            raise
        out.setArray(product.product)
        product.destroy()

    def _monitor(self, tao: Any) -> None:
        if tao.getIterationNumber() == 0:  # the starting point: its work counts for iteration 1
            return
        f, gnorm, _ = tao.getSolutionNorm()
        record = self._records.record(objective=f, gradient_norm=gnorm, solves=self.n_solves,
                                      elapsed=time.perf_counter() - self._start)
        self.logger.info("iteration %d: J = %.10e, |g| = %.3e, %d solves so far, %.2f s",
                         record["iteration"], f, gnorm, self.n_solves, record["elapsed"])

    # -- helpers ----------------------------------------------------------------------------
    def _bound_vecs(self, lower: Any, upper: Any) -> tuple[Any, Any] | None:
        if lower is None and upper is None:
            return None
        PETSc = petsc()
        out = []
        for value, infinite, name in ((lower, PETSc.NINFINITY, "lower"),
                                      (upper, PETSc.INFINITY, "upper")):
            vec = self.problem.theta_layout.create_vec()
            if value is None:
                vec.set(infinite)
            elif np.isscalar(value):
                vec.set(float(value))
            else:
                self.solver.backend._copy_in(value, vec, name)
            out.append(vec)
        self.solver.backend.guard.checkpoint("the check of the bounds")
        return out[0], out[1]

    def _attach_records(self, exc: BaseException) -> None:
        exc.history = list(self.history)  # type: ignore[attr-defined]
        exc.evaluations = list(self.evaluations)  # type: ignore[attr-defined]
        note = (f"raised by gradient evaluation {self.n_solves + 1} inside TAO, after "
                f"{len(self.history)} iteration(s): their records are in this exception's "
                ".history and .evaluations")
        if hasattr(exc, "add_note"):
            exc.add_note(note)


class _HessianAction:
    """The shell matrix context: ``H v`` by the second-order adjoints at TAO's θ."""

    def __init__(self, owner: TaoObjective) -> None:
        self.owner = owner
        self.offset = 0.0  # MatShift's accumulated diagonal shift

    def mult(self, mat: Any, v: Any, out: Any) -> None:
        self.owner._hessian_product(v, out)
        if self.offset:
            out.axpy(self.offset, v)

    def multTranspose(self, mat: Any, v: Any, out: Any) -> None:  # noqa: N802 (petsc4py)
        self.mult(mat, v, out)

    def shift(self, mat: Any, alpha: float) -> None:
        self.offset += float(alpha)


def tao_minimize(solver: PetscAdjointSolver, theta0: Any, *, method: str = "blmvm",
                 **kwargs: Any) -> TaoResult:
    """Minimise J(θ) with PETSc TAO and adjoint gradients (collective).

    A :class:`TaoObjective` built with ``method`` and ``kwargs``, run from ``theta0`` (this
    rank's part) and destroyed.

    Returns
    -------
    TaoResult
    """
    objective = TaoObjective(solver, method=method, **kwargs)
    try:
        return objective.solve(theta0)
    finally:
        objective.destroy()


def _reason_name(reason: int) -> str:
    names = {value: name for name, value in vars(petsc().TAO.ConvergedReason).items()
             if isinstance(value, int) and not name.startswith("_")}
    return names.get(reason, str(reason))

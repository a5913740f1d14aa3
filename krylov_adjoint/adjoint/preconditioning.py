"""Set up the preconditioner once, share it between primal and adjoint, reuse it across θ."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..precond.base import Preconditioner
from ..precond.factory import resolve_preconditioner
from ..problem.problem import AdjointProblem

__all__ = ["PreconditionerCache"]


class PreconditionerCache:
    """Holds the preconditioner of an :class:`~krylov_adjoint.AdjointSolver`.

    The preconditioner is set up from ``problem.assemble(θ)`` on first use and kept while θ
    changes. It is rebuilt at the next call when a primal solve needs more than
    ``rebuild_factor ×`` the iterations measured right after set-up (plus one), or on request;
    with ``reuse=False`` it is set up again for every new θ.
    The baseline counts as at least 3 iterations, so that a warm-started solve that happens
    to converge at once does not make every later solve look like a degradation.

    Parameters
    ----------
    problem : AdjointProblem
    spec : str, Preconditioner, LinearOperator, MultilevelSolver, callable or None
        ``"auto"`` (AMG when an assembled matrix is available, else none), ``"amg"``,
        ``"ilu"``, ``"jacobi"``, ``"none"``/None, a ready :class:`Preconditioner` or a scipy
        ``LinearOperator`` with ``rmatvec`` or a pyamg ``MultilevelSolver`` (used as is,
        never rebuilt), or a callable ``A -> Preconditioner``; checked by
        :func:`~krylov_adjoint.precond.resolve_preconditioner`.
    options : dict
        Keyword arguments for the preconditioner's constructor (names checked at once).
    rebuild_factor : float or None
        None disables automatic rebuilds.
    reuse : bool
        Keep the preconditioner across θ (the default). False sets it up once per new θ
        (shared by every solve at that θ), e.g. when θ changes a lot between calls.
    """

    def __init__(self, problem: AdjointProblem, spec: Any, options: dict[str, Any] | None,
                 rebuild_factor: float | None, reuse: bool = True) -> None:
        self.source = resolve_preconditioner(spec, options, n=problem.n,
                                             has_assembled=problem.operator.has_assembled)
        self.fixed: Preconditioner | None = self.source.fixed
        if rebuild_factor is not None and not rebuild_factor >= 1.0:
            raise ValueError(f"rebuild_factor must be >= 1 or None, got {rebuild_factor!r}")
        self.problem = problem
        # What make_preconditioner accepts: the kind or factory set up here, or for a fixed
        # preconditioner the specification given ("none" for no preconditioning).
        if self.fixed is None:
            self.spec = self.source.kind
        else:
            self.spec = "none" if self.source.name == "none" else spec
        self.options = dict(self.source.options)
        self.rebuild_factor = rebuild_factor
        self.reuse = bool(reuse)
        self._setup_theta: np.ndarray | None = None
        self.current: Preconditioner | None = self.fixed
        self.baseline_iterations: int | None = None
        self.stale_reason = "" if self.fixed is not None else "first set-up"
        self.setups = 0

    @property
    def name(self) -> str:
        """The kind of preconditioner, for reports."""
        return self.source.name

    def request_rebuild(self, reason: str = "rebuild requested") -> None:
        """Set up the preconditioner again at the next call (no effect on a fixed one)."""
        if self.fixed is None:
            self.stale_reason = reason

    def get(self, theta: np.ndarray) -> tuple[Preconditioner, bool, float, str]:
        """Return ``(M, rebuilt, setup_seconds, note)`` for a solve at θ."""
        if (not self.reuse and self.fixed is None and self._setup_theta is not None
                and not self.stale_reason and not np.array_equal(theta, self._setup_theta)):
            self.stale_reason = "new theta (reuse_preconditioner=False)"
        if self.current is not None and not self.stale_reason:
            return self.current, False, 0.0, f"{self.name} reused"
        start = time.perf_counter()
        A = self.problem.assemble(theta)
        self.current = self.source.build(A)
        self._setup_theta = np.array(theta, copy=True)
        seconds = time.perf_counter() - start
        note = f"{self.name} set up ({self.stale_reason})"
        self.stale_reason = ""
        self.baseline_iterations = None
        self.setups += 1
        return self.current, True, seconds, note

    def record_primal_iterations(self, iterations: int) -> None:
        """Track the primal iteration count and mark the preconditioner stale if it grew."""
        if self.fixed is not None or self.rebuild_factor is None:
            return
        if self.baseline_iterations is None:
            self.baseline_iterations = iterations
        elif iterations > self.rebuild_factor * max(self.baseline_iterations, 3) + 1:
            self.stale_reason = (f"primal iterations grew from {self.baseline_iterations} to "
                                 f"{iterations} (> {self.rebuild_factor:g}x)")

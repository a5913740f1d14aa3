"""The engine behind a framework's linear solve: primal with M, transpose with Mᵀ, on the host."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..adjoint.solver import AdjointSolver
from ..krylov.result import SolveResult
from ..problem.objective import LinearFunctional
from ..problem.operator import ParametricOperator
from ..problem.problem import AdjointProblem
from .options import check_options

__all__ = ["HostSolver", "SolverCache"]


class HostSolver:
    """``A(θ) x = b`` and ``A(θ)ᵀ λ = g`` on the gradient engine, for a framework primitive.

    One :class:`~krylov_adjoint.AdjointSolver` holds the set-up: the solves of a forward
    pass and of its backward pass at the same θ share it (the transpose applies Mᵀ), and a
    new θ keeps or rebuilds it by the engine's reuse rule, as in an optimisation loop. The
    right-hand side is given per call (the problem's own b is not used).

    Parameters
    ----------
    operator : ParametricOperator
        A(θ) on numpy arrays (products, transpose, optionally ``assemble`` for AMG).
    n_params : int
        P, the length of θ.
    **options
        Those of :class:`~krylov_adjoint.AdjointSolver` listed in
        :data:`~krylov_adjoint.frameworks.options.SOLVER_OPTIONS`.

    Attributes
    ----------
    records : dict of str to SolveResult
        The last ``"primal"`` and ``"adjoint"`` solves (a batch keeps its last column's).

    Examples
    --------
    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> op = ka.ParametricOperator(lambda th, x: th * x, n=3, structure="spd",
    ...                            vjp=lambda th, x, lam: lam * x)
    >>> host = HostSolver(op, 3, rtol=1e-12)
    >>> host.solve(np.array([1.0, 2.0, 4.0]), np.ones(3))
    array([1.  , 0.5 , 0.25])
    >>> host.solve(np.array([[1.0, 2.0, 4.0]]), np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 2.0]]))
    array([[1. , 1. , 1. ],
           [2. , 1. , 0.5]])
    """

    def __init__(self, operator: ParametricOperator, n_params: int, **options: Any) -> None:
        n = operator.n
        problem = AdjointProblem(operator, np.zeros(n), LinearFunctional(np.zeros(n)),
                                 n_params=n_params)
        self.engine = AdjointSolver(problem, check_gradient=False, **check_options(options))
        self.n, self.n_params = n, int(n_params)
        self.records: dict[str, SolveResult] = {}

    def solve(self, theta: Any, b: Any) -> np.ndarray:
        """x with ``A(θ) x = b``; θ of shape (..., P) and b of shape (..., N) broadcast
        over their leading (batch) axes, one solve per column with a shared set-up."""
        return self._batched("primal", self.engine.solve, theta, b)

    def solve_transpose(self, theta: Any, g: Any) -> np.ndarray:
        """λ with ``A(θ)ᵀ λ = g`` (the transposed preconditioner of the same set-up),
        batched as :meth:`solve`."""
        return self._batched("adjoint", self.engine.solve_transpose, theta, g)

    def _batched(self, phase: str, solve: Callable[[Any, Any], SolveResult], theta: Any,
                 rhs: Any) -> np.ndarray:
        theta = np.asarray(theta)
        rhs = np.asarray(rhs)
        batch = np.broadcast_shapes(theta.shape[:-1], rhs.shape[:-1])
        thetas = np.broadcast_to(theta, batch + theta.shape[-1:]).reshape(-1, theta.shape[-1])
        rhss = np.broadcast_to(rhs, batch + rhs.shape[-1:]).reshape(-1, rhs.shape[-1])
        out = np.empty(rhss.shape, dtype=np.float64)
        for k, (th, r) in enumerate(zip(thetas, rhss, strict=True)):
            result = solve(th, r)
            self.records[phase] = result
            out[k] = result.x
        return out.reshape(batch + rhs.shape[-1:])


class SolverCache:
    """The last few :class:`HostSolver` objects, by key: a primitive called again with the
    same callbacks, shapes and options reuses its set-up (and its warm start).

    Keys hold the callbacks themselves (compared by identity), so a ``matvec`` defined once
    is found again, while a new lambda per call makes a new solver.

    Examples
    --------
    >>> cache = SolverCache(maxsize=2)
    >>> cache.get(("a",), lambda: "first"), cache.get(("a",), lambda: "second")
    ('first', 'first')
    >>> cache.get(None, lambda: "unhashable options: not kept")
    'unhashable options: not kept'
    >>> len(cache)
    1
    """

    def __init__(self, maxsize: int = 8) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        """The entry of ``key``, built by ``build()`` on a miss (never kept for key None)."""
        if key is None:
            return build()
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = build()
        self._entries[key] = value
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every solver (and its set-up)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

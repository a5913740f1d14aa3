"""The Jacobian of several outputs J_k(x(θ), θ): K adjoint solves or P tangent solves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..krylov.result import SolveResult
from ..problem.objective import Objective

__all__ = ["JacobianResult", "jacobian"]

MODES = ("auto", "adjoint", "tangent")


@dataclass(frozen=True)
class JacobianResult:
    """dJ_k/dθ for K outputs, and the solves that gave it.

    Attributes
    ----------
    matrix : ndarray, shape (K, P)
        Row k is dJ_k/dθ (on PETSc: this rank's θ columns, shape (K, params_local)).
    values : ndarray, shape (K,)
        J_k(x(θ), θ).
    mode : {"adjoint", "tangent"}
        K adjoint solves (one per output) or P tangent solves (one per parameter).
    primal : SolveResult
    solves : tuple of SolveResult
        The K adjoint or P tangent solves, in order.
    times : dict
        ``primal``, ``solves`` and ``total`` wall times.
    """

    matrix: np.ndarray
    values: np.ndarray
    mode: str
    primal: SolveResult
    solves: tuple[SolveResult, ...]
    times: dict[str, float] = field(default_factory=dict)


def checked_outputs(outputs: Any) -> list[Objective]:
    """The outputs as a list of :class:`Objective`, or a clear error."""
    outputs = list(outputs)
    if not outputs or not all(isinstance(o, Objective) for o in outputs):
        raise InputError("outputs", "expected a non-empty sequence of Objective (one per "
                                    "output J_k(θ, x))")
    return outputs


def jacobian(engine: Any, theta: Any, outputs: Any, *, mode: str = "auto") -> JacobianResult:
    """See :meth:`~krylov_adjoint.adjoint.engine.GradientEngine.jacobian`."""
    outputs = checked_outputs(outputs)
    if mode not in MODES:
        raise InputError("mode", f"expected one of {MODES}, got {mode!r}")
    start = time.perf_counter()
    backend = engine.backend
    bound = engine._bind(theta, {})
    x, primal = engine._primal(bound, {})[:2]
    tick = time.perf_counter()
    n_params = backend.problem.n_params
    if mode == "auto":
        mode = "adjoint" if len(outputs) <= n_params else "tangent"
    views = [backend.with_objective(bound, output) for output in outputs]
    values = np.array([backend.objective_value(view, x) for view in views])
    solves: list[SolveResult] = []
    if mode == "adjoint":
        rows = []
        for view in views:
            gradient, solve = engine._output_gradient(view, x)
            rows.append(backend.local_parameters(gradient))
            solves.append(solve)
        matrix = np.array(rows)
    else:
        # copied one by one: a backend may return the same ∂J/∂x vector every time
        gradients = [backend.copy(backend.objective_grad_x(view, x)) for view in views]
        columns = []
        for p in range(n_params):
            direction = backend.unit_parameter(p)
            xdot, solve = engine._tangent(bound, x, direction)
            columns.append([backend.dot(g, xdot) + backend.direct_derivative(view, x, direction)
                            for g, view in zip(gradients, views, strict=True)])
            solves.append(solve)
        matrix = backend.local_columns(np.array(columns).T)
    now = time.perf_counter()
    times = {"primal": primal.seconds, "solves": now - tick, "total": now - start}
    return JacobianResult(matrix=matrix, values=values, mode=mode, primal=primal,
                          solves=tuple(solves), times=times)


def weighted_outputs(outputs: list[Objective], weights: np.ndarray) -> Objective:
    """``Σ_k w_k J_k`` as one objective (θ first), for a Jacobian-transpose product."""
    pairs = [(float(w), o) for w, o in zip(weights, outputs, strict=True)]

    def value(theta: np.ndarray, x: np.ndarray) -> float:
        return sum(w * float(o.value(x, theta)) for w, o in pairs)

    def grad_x(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return sum(w * np.asarray(o.grad_x(x, theta), dtype=float) for w, o in pairs)

    def grad_theta(theta: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        parts = [(w, o.grad_theta(x, theta)) for w, o in pairs]
        present = [w * np.asarray(g, dtype=float) for w, g in parts if g is not None]
        return sum(present) if present else None

    return Objective(J=value, dJ_dx=grad_x, dJ_dtheta=grad_theta)


def jacobian_products(engine: Any, theta: Any, outputs: Any) -> tuple[Any, Any]:
    """``(dθ ↦ J dθ, w ↦ Jᵀw)`` for K outputs, each one solve (tangent, adjoint) after one
    primal solve per call; see :meth:`GradientEngine.jacobian_operator`."""
    outputs = checked_outputs(outputs)
    backend = engine.backend

    def forward(dtheta: Any) -> np.ndarray:
        bound = engine._bind(theta, {})
        x = engine._primal(bound, {})[0]
        direction = backend.check_direction(dtheta)
        xdot, _ = engine._tangent(bound, x, direction)
        return np.array([engine._derivative(backend.with_objective(bound, o), x, xdot,
                                            direction) for o in outputs])

    def transpose(weights: Any) -> np.ndarray:
        w = np.asarray(weights, dtype=float).reshape(-1)
        if w.shape != (len(outputs),):
            raise InputError("weights", f"expected shape ({len(outputs)},), got {w.shape}")
        bound = engine._bind(theta, {})
        x = engine._primal(bound, {})[0]
        view = backend.with_objective(bound, weighted_outputs(outputs, w))
        return backend.local_parameters(engine._output_gradient(view, x)[0])

    return forward, transpose

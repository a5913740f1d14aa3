"""Collective verification: dot-product tests and the Taylor test, on distributed problems.

Every function is collective (all ranks call it with their local data) and returns the same
report on every rank: the serial :mod:`krylov_adjoint.verify` report classes, with inner
products and norms reduced over the ranks. Random vectors are drawn per rank from ``rng``
offset by the rank, so a seed makes a test reproducible for a given number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...verify import DotTestReport, TaylorReport, taylor_test
from ...verify._random import scaled_direction
from ...verify.taylor import FIRST_STEP, HALVINGS, SOLVER_NOISE_FACTOR
from ._import import mpi
from .collective import ErrorGuard
from .problem import DistributedProblem
from .vecs import VecProblem

__all__ = ["operator_dot_test", "operator_vjp_test", "rhs_vjp_test",
           "preconditioner_dot_test", "adjoint_preconditioner_test", "taylor_test_solver"]

Apply = Callable[[Any, Any], None]


def _generator(rng: Any, comm: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    seed = 0 if rng is None else int(rng)
    return np.random.default_rng([seed, int(comm.Get_rank())])


def _dot(comm: Any, a: np.ndarray, b: np.ndarray) -> float:
    return float(comm.allreduce(float(np.dot(a, b)), op=mpi().SUM))


def _norm(comm: Any, a: np.ndarray) -> float:
    return float(np.sqrt(comm.allreduce(float(np.dot(a, a)), op=mpi().SUM)))


def collective_dot_test(comm: Any, forward: Apply, transpose: Apply, make_u: Callable[[], Any],
                        make_v: Callable[[], Any], *, rng: Any, trials: int, rtol: float,
                        name: str, shape: tuple[int, int]) -> DotTestReport:
    """⟨F u, v⟩ = ⟨u, Fᵀ v⟩ with global inner products (the serial test's normalised error).

    ``forward(u, out)``/``transpose(v, out)`` fill PETSc Vecs; ``make_u``/``make_v`` create
    Vecs on the input and output layouts.
    """
    generator = _generator(rng, comm)
    errors = []
    u, v, Fu, FTv = make_u(), make_v(), make_v(), make_u()
    for _ in range(int(trials)):
        u.setArray(generator.standard_normal(u.getLocalSize()))
        v.setArray(generator.standard_normal(v.getLocalSize()))
        forward(u, Fu)
        transpose(v, FTv)
        ua, va = u.getArray(readonly=True), v.getArray(readonly=True)
        fa, ta = Fu.getArray(readonly=True), FTv.getArray(readonly=True)
        gap = abs(_dot(comm, fa, va) - _dot(comm, ua, ta))
        scale = _norm(comm, fa) * _norm(comm, va) + _norm(comm, ua) * _norm(comm, ta)
        errors.append(0.0 if gap == 0.0 else (gap / scale if scale > 0 else np.inf))
    for vec in (u, v, Fu, FTv):
        vec.destroy()
    return DotTestReport(name, shape, np.array(errors), float(rtol))


def _bound(problem: DistributedProblem, theta: Any, guard: ErrorGuard) -> VecProblem:
    vec = problem.theta_layout.create_vec()
    with guard.local("theta", is_input=True):
        vec.setArray(np.asarray(theta, dtype=np.float64).reshape(-1))
    guard.checkpoint("the check of theta")
    bound = VecProblem(problem, vec, guard)
    guard.checkpoint("operator.prepare")
    return bound


def operator_dot_test(problem: DistributedProblem, theta: Any, *, rng: Any = None,
                      trials: int = 3, rtol: float = 1e-12) -> DotTestReport:
    """Does ``operator.rmatvec`` apply the transpose of ``operator.matvec``? (collective)"""
    guard = ErrorGuard(problem.comm)
    bound = _bound(problem, theta, guard)
    n = problem.n
    report = collective_dot_test(problem.comm, bound.matvec, bound.rmatvec,
                                 problem.x_layout.create_vec, problem.x_layout.create_vec,
                                 rng=rng, trials=trials, rtol=rtol, name="operator.rmatvec",
                                 shape=(n, n))
    guard.checkpoint("the operator dot-product test")
    return report


def operator_vjp_test(problem: DistributedProblem, theta: Any, *, rng: Any = None,
                      trials: int = 3, rtol: float = 1e-10) -> DotTestReport:
    """Is ``operator.vjp`` the transpose of ``operator.jvp`` at a random x? (collective)

    ``⟨vjp(θ, x, λ), dθ⟩ = ⟨λ, jvp(θ, x, dθ)⟩`` for random λ and dθ.
    """
    guard = ErrorGuard(problem.comm)
    bound = _bound(problem, theta, guard)
    generator = _generator(rng, problem.comm)
    x = problem.x_layout.create_vec()
    x.setArray(generator.standard_normal(problem.n_local))

    def forward(dtheta: Any, out: Any) -> None:
        bound.operator_jvp(x, dtheta, out)

    def transpose(lam: Any, out: Any) -> None:
        bound.operator_vjp(x, lam, out)

    report = collective_dot_test(problem.comm, forward, transpose,
                                 problem.theta_layout.create_vec, problem.x_layout.create_vec,
                                 rng=generator, trials=trials, rtol=rtol, name="operator.vjp",
                                 shape=(problem.n, problem.n_params))
    x.destroy()
    guard.checkpoint("the operator vjp test")
    return report


def rhs_vjp_test(problem: DistributedProblem, theta: Any, *, rng: Any = None,
                 trials: int = 3, rtol: float = 1e-10) -> DotTestReport:
    """Is ``rhs.vjp`` the transpose of ``rhs.jvp``? (collective)"""
    guard = ErrorGuard(problem.comm)
    bound = _bound(problem, theta, guard)
    report = collective_dot_test(problem.comm, bound.rhs_jvp, bound.rhs_vjp,
                                 problem.theta_layout.create_vec, problem.x_layout.create_vec,
                                 rng=rng, trials=trials, rtol=rtol, name="rhs.vjp",
                                 shape=(problem.n, problem.n_params))
    guard.checkpoint("the rhs vjp test")
    return report


def preconditioner_dot_test(solver: Any, *, rng: Any = None, trials: int = 3,
                            rtol: float = 1e-10) -> DotTestReport:
    """Does the primal PC's ``applyTranspose`` apply the transpose of its ``apply``?

    Run after a solve (the PC is set up). Collective.
    """
    pc = solver.primal_ksp.getPC()
    layout = solver.problem.x_layout
    n = layout.size
    return collective_dot_test(solver.comm, pc.apply, pc.applyTranspose, layout.create_vec,
                               layout.create_vec, rng=rng, trials=trials, rtol=rtol,
                               name="preconditioner.apply_transpose", shape=(n, n))


def adjoint_preconditioner_test(solver: Any, *, rng: Any = None, trials: int = 3
                                ) -> np.ndarray:
    """``‖M_adj v − Mᵀ v‖ / ‖Mᵀ v‖`` for random v: how close the adjoint solve's PC is to the
    exact transpose of the primal PC (0 up to round-off for ``"shared"`` and
    ``"transpose"``; small but not zero for ``"explicit"``). Collective; after a gradient.
    """
    comm = solver.comm
    generator = _generator(rng, comm)
    primal, adjoint = solver.primal_ksp.getPC(), solver.adjoint_ksp.getPC()
    layout = solver.problem.x_layout
    v, a, b = layout.create_vec(), layout.create_vec(), layout.create_vec()
    out = []
    for _ in range(int(trials)):
        v.setArray(generator.standard_normal(layout.local_size))
        primal.applyTranspose(v, a)
        adjoint.apply(v, b)
        b.axpy(-1.0, a)
        out.append(float(b.norm()) / float(a.norm()))
    for vec in (v, a, b):
        vec.destroy()
    return np.array(out)


def taylor_test_solver(solver: Any, theta: Any, *, direction: Any = None, steps: Any = None,
                       rng: Any = None, rate_range: tuple[float, float] = (1.9, 2.1),
                       min_rates: int = 2) -> TaylorReport:
    """Taylor test of a :class:`PetscAdjointSolver`'s gradient at θ (collective).

    The serial :func:`krylov_adjoint.verify.taylor_test_solver` with global inner products:
    ``J(θ + h dθ) − J(θ) − h (dJ/dθ)·dθ`` must fall as h² (rate ≈ 2). ``theta`` and
    ``direction`` are this rank's parts; the default direction is random, scaled entry-wise
    by ``|θ|``; the default steps start at ``h₀‖dθ‖ = 1e-2‖θ‖`` (global norms) and are
    halved 5 times. Build the solver with a tight ``rtol`` (1e-12).
    """
    comm = solver.comm
    theta = np.array(theta, dtype=np.float64).reshape(-1)
    generator = _generator(rng, comm)
    if direction is None:
        direction = scaled_direction(theta, generator)
    direction = np.asarray(direction, dtype=np.float64).reshape(-1)
    result = solver.gradient(theta)
    slope = _dot(comm, np.asarray(result.gradient), direction)
    if steps is None:
        size, length = _norm(comm, theta), _norm(comm, direction)
        first = FIRST_STEP * (size if size > 0 else 1.0) / length
        steps = first * 0.5 ** np.arange(HALVINGS + 1)
    noise = SOLVER_NOISE_FACTOR * float(result.adjoint_vec.norm()) * result.primal.target

    def along(t: np.ndarray) -> float:
        return solver.objective(theta + float(t[0]) * direction)

    return taylor_test(along, np.zeros(1), np.array([slope]), direction=np.ones(1),
                       steps=steps, value=result.objective, rate_range=rate_range,
                       min_rates=min_rates, noise_floor=noise)

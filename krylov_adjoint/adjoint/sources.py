"""Many sources on the engine: ``J(θ) = Σₛ Jₛ(θ, xₛ)`` with ``A(θ) xₛ = bₛ(θ)``.

One preconditioner set-up serves all S primal and S adjoint solves, which go (``solves``)

* ``"batched_cg"``: the S primal solves as CG recurrences in lockstep
  (:func:`~krylov_adjoint.krylov.block_cg.batched_cg`), the operator applied to (N, k) blocks
  when it is declared ``block=True`` and the preconditioner when it takes blocks (AMG cycles
  the block at once), then the S adjoint solves likewise, at most ``block_size`` columns a
  block: the iterations of S separate CG solves for fewer, larger sparse products;
* ``"block_cg"``: the same blocks in one block Krylov space
  (:func:`~krylov_adjoint.krylov.block_cg.block_cg`): fewer iterations when a single solve
  needs many (a weak preconditioner), at O(N k²) dense work per iteration;
* ``"one_by_one"``: one source after another, each solve warm-started from that source's
  last converged x and λ (every backend, every Krylov method; on PETSc through the two
  KSPs of the single-source gradient).

A primal solve that fails with a preconditioner kept from an earlier θ gets the reuse rule's
second chance: one new set-up, and the primal solves start over (without the single-source
gradient's iteration cap on the kept preconditioner).

``"auto"`` is ``"one_by_one"``: on the reference machine (docs/benchmarks.md) lockstep blocks
were slower than one source after another, whatever the block size (2 to 16 columns) and
even with AMG cycling whole blocks (Chebyshev smoothing): the single vectors of a 256² or
512² solve stay in cache, (N, k) blocks stream from memory. Blocks start from the sources'
last converged solutions too. On the serial backend the gradient calls the operator's VJP
once on the (N, S) blocks of x and λ whichever way the solves went (when it is declared
``block=True``).

The gradient is ``Σₛ [∂Jₛ/∂θ − λₛᵀ(∂A/∂θ xₛ − ∂bₛ/∂θ)]``, with the operator's VJP called
once on the (N, S) blocks when it is declared ``block=True``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import (
    CallbackError,
    ConvergenceError,
    InputError,
    KrylovAdjointError,
    NonFiniteError,
)
from ..krylov.result import SolveResult
from ..problem.sources import Sources
from .backend import SolveSettings

__all__ = ["SourcesResult", "sources_gradient"]

#: Columns per block (memory: a few (N, k) arrays; block CG's QR costs O(N k²) per step).
BLOCK_SIZE = 16
#: How the sources' solves may go.
SOLVES = ("auto", "batched_cg", "block_cg", "one_by_one")


@dataclass(frozen=True)
class SourcesResult:
    """J = Σₛ Jₛ, dJ/dθ and the report of every source's two solves.

    Attributes
    ----------
    objective : float
        J(θ) = Σₛ Jₛ(θ, xₛ).
    gradient : ndarray, shape (P,)
        dJ/dθ (on PETSc: this rank's entries of θ).
    objectives : ndarray, shape (S,)
        Jₛ of each source.
    states, adjoints : ndarray, shape (N, S)
        xₛ and λₛ as columns (on PETSc: this rank's rows).
    primal, adjoint_solves : tuple of SolveResult
        Source s's primal and adjoint solve: iterations, residual history, reason.
    solves : {"batched_cg", "block_cg", "one_by_one"}
        How the solves went (see :mod:`krylov_adjoint.adjoint.sources`).
    times : dict
        Wall times of ``bind``, ``setup`` (0 when the preconditioner was kept), ``primal``
        (all sources), ``objective``, ``adjoint``, ``gradient`` (the VJPs) and ``total``.
    preconditioner_rebuilt : bool
    preconditioner_note : str
        As in :class:`~krylov_adjoint.GradientResult`: one set-up for all 2S solves.
    """

    objective: float
    gradient: np.ndarray
    objectives: np.ndarray
    states: np.ndarray
    adjoints: np.ndarray
    primal: tuple[SolveResult, ...]
    adjoint_solves: tuple[SolveResult, ...]
    solves: str
    times: dict[str, float]
    preconditioner_rebuilt: bool = False
    preconditioner_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_sources(self) -> int:
        """S."""
        return len(self.primal)

    @property
    def converged(self) -> bool:
        """True when every primal and adjoint solve converged."""
        return all(r.converged for r in self.primal + self.adjoint_solves)

    @property
    def primal_iterations(self) -> int:
        """Krylov iterations of the primal solves: their sum over the sources; with block CG
        the block iterations (every column of a block takes part in each), summed over the
        blocks."""
        return _iterations(self.primal, self.solves)

    @property
    def adjoint_iterations(self) -> int:
        """The same for the adjoint solves."""
        return _iterations(self.adjoint_solves, self.solves)

    def summary(self) -> str:
        """A few lines: J, ‖dJ/dθ‖, the solves' totals and worst source, times."""
        worst = max(range(self.n_sources),
                    key=lambda s: self.primal[s].iterations + self.adjoint_solves[s].iterations)
        failed = [s for s in range(self.n_sources)
                  if not (self.primal[s].converged and self.adjoint_solves[s].converged)]
        how = {"batched_cg": "CG in lockstep on blocks", "block_cg": "block CG",
               "one_by_one": "one source after another, warm-started"}[self.solves]
        return "\n".join([
            f"J = {self.objective:.10e} over S = {self.n_sources} sources, "
            f"|dJ/dtheta| = {float(np.linalg.norm(self.gradient)):.6e}",
            f"solves : {how}; primal {self.primal_iterations}, adjoint "
            f"{self.adjoint_iterations} iterations in all",
            f"worst  : source {worst}: primal {self.primal[worst].summary()}; adjoint "
            f"{self.adjoint_solves[worst].summary()}",
            "failed : " + (", ".join(str(s) for s in failed) if failed else "none"),
            "times  : " + ", ".join(f"{k} {v:.3f} s" for k, v in self.times.items()),
            f"preconditioner: {self.preconditioner_note}",
        ])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly record (no arrays), for logs and benchmarks."""
        return {
            "objective": self.objective,
            "gradient_norm": float(np.linalg.norm(self.gradient)),
            "n_sources": self.n_sources, "solves": self.solves,
            "primal_iterations": [r.iterations for r in self.primal],
            "adjoint_iterations": [r.iterations for r in self.adjoint_solves],
            "primal_reasons": [r.reason.name for r in self.primal],
            "adjoint_reasons": [r.reason.name for r in self.adjoint_solves],
            "preconditioner_rebuilt": self.preconditioner_rebuilt,
            **{f"{k}_s": v for k, v in self.times.items()},
        }


def _iterations(results: tuple[SolveResult, ...], solves: str) -> int:
    if solves != "block_cg":
        return sum(r.iterations for r in results)
    blocks: dict[int, int] = {}
    for k, r in enumerate(results):
        size = int(r.extra.get("block_size", 1))
        blocks[k // max(size, 1)] = max(blocks.get(k // max(size, 1), 0), r.iterations)
    return sum(blocks.values())


def sources_gradient(engine: Any, theta: Any, sources: Sources, *, solves: str = "auto",
                     block_size: int = BLOCK_SIZE) -> SourcesResult:
    """See :meth:`~krylov_adjoint.adjoint.engine.GradientEngine.sources_gradient`."""
    if not isinstance(sources, Sources):
        raise InputError("sources", f"expected a krylov_adjoint.Sources, got "
                                    f"{type(sources).__name__}")
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer) \
            or block_size < 1:
        raise InputError("block_size", f"expected an integer >= 1, got {block_size!r}")
    start = time.perf_counter()
    backend = engine.backend
    times: dict[str, float] = {}
    bound = engine._bind(theta, times)
    _check_lengths(backend, sources)
    _choose_solves(engine, sources, solves)  # bad input refused before the set-up
    rebuilt, note = engine._ensure_preconditioner(bound, times)
    solves = _choose_solves(engine, sources, solves)
    views = [backend.with_source(bound, rhs, objective)
             for rhs, objective in zip(sources.rhs, sources.objectives, strict=True)]
    kept = not rebuilt and engine.reuse.automatic
    run = _OneByOne(engine, views, kept) if solves == "one_by_one" \
        else _BlockRun(engine, views, kept, block_size, solves)

    tick, again = time.perf_counter(), 0.0
    try:
        primal = run.solve("primal")
    except _KeptPreconditionerError as failure:  # the reuse rule's second chance
        again = engine._set_up(bound)
        times["setup"] += again
        rebuilt, note = True, (f"{backend.preconditioner_name} set up again (the primal solve "
                               f"of source {failure.source} with the kept preconditioner "
                               f"stopped: {failure.reason}){engine._kept_note()}")
        primal = run.solve("primal")
    times["primal"] = time.perf_counter() - tick - again

    tick = time.perf_counter()
    objectives = np.array([_in_source(s, backend.objective_value, view, run.state(s))
                           for s, view in enumerate(views)])
    times["objective"] = time.perf_counter() - tick
    tick = time.perf_counter()
    adjoint = run.solve("adjoint")
    times["adjoint"] = time.perf_counter() - tick
    tick = time.perf_counter()
    gradient = run.gradient()
    times["gradient"] = time.perf_counter() - tick
    if engine._derivative_check_due(automatic_setup=bool(again)):
        tick = time.perf_counter()
        # the operator's VJP (shared by every source) at source 0's x and λ; the sources'
        # own rhs.vjp and grad_theta are the Taylor test's (krylov_adjoint.verify)
        engine._check_derivatives(bound, run.state(0), run.adjoint_state(0))
        times["check"] = time.perf_counter() - tick
    times["total"] = time.perf_counter() - start
    return SourcesResult(
        objective=float(objectives.sum()), gradient=gradient, objectives=objectives,
        states=run.local_block("primal"), adjoints=run.local_block("adjoint"),
        primal=tuple(primal), adjoint_solves=tuple(adjoint), solves=solves, times=times,
        preconditioner_rebuilt=rebuilt, preconditioner_note=note)


# -- the two ways through the sources ---------------------------------------------------------
class _KeptPreconditionerError(Exception):
    """A primal solve failed with a preconditioner kept from an earlier θ."""

    def __init__(self, source: int, reason: str) -> None:
        super().__init__(source, reason)
        self.source, self.reason = source, reason


class _OneByOne:
    """Source after source through the backend's single solves, each warm-started from that
    source's last converged x and λ (kept by the engine under ``("primal", s)`` and
    ``("adjoint", s)``, forgotten by ``reset_warm_start``)."""

    def __init__(self, engine: Any, views: list[Any], kept: bool) -> None:
        self.engine, self.backend, self.views, self.kept = engine, engine.backend, views, kept
        self.solutions: dict[str, list[Any]] = {}

    def state(self, s: int) -> Any:
        return self.solutions["primal"][s]

    def adjoint_state(self, s: int) -> Any:
        return self.solutions["adjoint"][s]

    def solve(self, phase: str) -> list[SolveResult]:
        engine, backend = self.engine, self.backend
        settings = engine._primal_settings() if phase == "primal" \
            else engine._adjoint_settings()
        kept, results, solutions = self.kept and phase == "primal", [], []
        for s, view in enumerate(self.views):
            rhs = _in_source(s, self._rhs, phase, s, view)
            x0 = engine._warm.get((phase, s)) if engine.warm_start else None
            result, x = _in_source(s, backend.solve, phase, view, rhs, x0,
                                   _for_source(settings, s))
            x = backend.copy(x)  # the backend solves into one buffer per phase
            if not result.converged:
                if kept:
                    self.kept = False  # the second chance is the only one
                    raise _KeptPreconditionerError(s, result.reason.name)
                if engine.raise_on_failure:
                    raise ConvergenceError(result, f"{phase} (source {s})")
            else:  # x is this source's own copy, and a solve does not write into x0
                engine._warm[(phase, s)] = x
            results.append(result)
            solutions.append(x)
            kept = False  # a set-up that passed one source is fit for the rest
        self.kept = False
        self.solutions[phase] = solutions
        return results

    def _rhs(self, phase: str, s: int, view: Any) -> Any:
        if phase == "primal":
            return self.backend.rhs(view)
        return self.backend.objective_grad_x(view, self.solutions["primal"][s])

    def gradient(self) -> np.ndarray:
        backend, total = self.backend, None
        if backend.supports_blocks:  # the operator's VJP once on the blocks when declared
            return _summed_gradient(backend, self.views, self.local_block("primal"),
                                    self.local_block("adjoint"))
        for s, view in enumerate(self.views):
            g = _in_source(s, backend.parameter_gradient, view, self.solutions["primal"][s],
                           self.solutions["adjoint"][s])
            local = np.array(backend.local_parameters(g), dtype=np.float64)
            total = local if total is None else total + local
        assert total is not None
        return total

    def local_block(self, phase: str) -> np.ndarray:
        return np.column_stack([np.array(self.backend.local_parameters(v))
                                for v in self.solutions[phase]])


class _BlockRun:
    """Blocks of at most ``block_size`` sources, by batched or block CG (serial backend)."""

    def __init__(self, engine: Any, views: list[Any], kept: bool, block_size: int,
                 method: str) -> None:
        self.engine, self.backend, self.views, self.kept = engine, engine.backend, views, kept
        self.block_size, self.method = block_size, method
        self.blocks: dict[str, np.ndarray] = {}

    def state(self, s: int) -> np.ndarray:
        return self.blocks["primal"][:, s]

    def adjoint_state(self, s: int) -> np.ndarray:
        return self.blocks["adjoint"][:, s]

    def solve(self, phase: str) -> list[SolveResult]:
        engine, backend = self.engine, self.backend
        settings = engine._primal_settings() if phase == "primal" \
            else engine._adjoint_settings()
        if phase == "primal":
            columns = [_in_source(s, backend.rhs, v) for s, v in enumerate(self.views)]
        else:
            columns = [_in_source(s, backend.objective_grad_x, v, self.state(s))
                       for s, v in enumerate(self.views)]
        B = np.column_stack(columns)
        X0 = self._warm(phase) if engine.warm_start else None
        results: list[SolveResult] = []
        for first in range(0, B.shape[1], self.block_size):
            chunk = slice(first, min(first + self.block_size, B.shape[1]))
            start = None if X0 is None else X0[:, chunk]
            results += _in_block(chunk, backend.solve_block, phase, self.views[0], B[:, chunk],
                                 start, settings, self.method)
        for s, result in enumerate(results):
            if result.converged:
                engine._warm[(phase, s)] = result.x.copy()
                continue
            if self.kept and phase == "primal":
                self.kept = False  # the second chance is the only one
                raise _KeptPreconditionerError(s, result.reason.name)
            if engine.raise_on_failure:
                raise ConvergenceError(result, f"{phase} (source {s})")
        self.kept = False
        self.blocks[phase] = np.column_stack([r.x for r in results])
        return results

    def _warm(self, phase: str) -> np.ndarray | None:
        """The sources' last converged solutions, zero columns where there are none."""
        warm = [self.engine._warm.get((phase, s)) for s in range(len(self.views))]
        if all(w is None for w in warm):
            return None
        n = self.backend.n
        return np.column_stack([np.zeros(n) if w is None else w for w in warm])

    def gradient(self) -> np.ndarray:
        return _summed_gradient(self.backend, self.views, self.blocks["primal"],
                                self.blocks["adjoint"])

    def local_block(self, phase: str) -> np.ndarray:
        return self.blocks[phase]


def _for_source(settings: SolveSettings, s: int) -> SolveSettings:
    """The settings with the monitor told the source: phase ``"primal[s]"`` (serial; a PETSc
    KSP keeps the monitor it was made with)."""
    monitor = settings.monitor
    if monitor is None:
        return settings
    return replace(settings, monitor=lambda phase, k, r: monitor(f"{phase}[{s}]", k, r))


def _summed_gradient(backend: Any, views: list[Any], X: np.ndarray, L: np.ndarray
                     ) -> np.ndarray:
    """Σₛ dJₛ/dθ from the (N, S) blocks of x and λ (a backend that ``supports_blocks``)."""
    try:
        return backend.block_parameter_gradient(views, X, L)
    except CallbackError as exc:
        raise (_named(exc, "sources") or exc) from exc


# -- checks and errors ------------------------------------------------------------------------
def _choose_solves(engine: Any, sources: Sources, solves: str) -> str:
    """The way asked for, checked (blocks: the serial backend and CG, A and M SPD)."""
    if solves not in SOLVES:
        raise InputError("solves", f"expected one of {SOLVES}, got {solves!r}")
    possible = engine.backend.supports_blocks and engine._method_now() == "cg"
    if solves == "auto":
        return "one_by_one"
    if solves != "one_by_one" and not possible:
        raise InputError("solves", f"{solves!r} needs the serial backend and CG (an operator "
                                   "declared structure='spd' with a symmetric "
                                   "preconditioner); 'auto' chooses what applies")
    return solves


def _check_lengths(backend: Any, sources: Sources) -> None:
    """Every fixed bₛ has this rank's number of rows (agreed over the ranks)."""
    why = sources.check_length(backend.problem.n_local)
    if backend.global_sum(0.0 if why is None else 1.0) > 0:
        raise InputError("sources.rhs", why or "a fixed right-hand side has the wrong length "
                                               "on another rank")


@contextmanager
def _source(label: str) -> Iterator[None]:
    try:
        yield
    except KrylovAdjointError as exc:
        named = _named(exc, label)
        if named is None:
            exc.add_note(f"(in {label})")
            raise
        raise named from exc


def _in_source(s: int, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` for source s: a callback's error names the source."""
    with _source(f"sources[{s}]"):
        return fn(*args)


def _in_block(chunk: slice, fn: Any, *args: Any) -> Any:
    with _source(f"sources[{chunk.start}:{chunk.stop}]"):
        return fn(*args)


def _named(exc: KrylovAdjointError, label: str) -> KrylovAdjointError | None:
    """The same error with the source named (before the callback, or in the phase of an
    error agreed over the ranks); None for an error of another kind."""
    failures = getattr(exc, "failures", None)
    if failures is not None:  # a collective error (PETSc): every rank rebuilds it alike
        return type(exc)(failures, f"{exc.phase} of {label}",  # type: ignore[call-arg]
                         exc.nranks, exc.count)  # type: ignore[attr-defined]
    if type(exc) in (CallbackError, NonFiniteError):
        return type(exc)(f"{label}: {exc.callback}", exc.detail)  # type: ignore[attr-defined]
    return None

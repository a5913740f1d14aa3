"""Distributed versions of the gallery's diffusion and convection–diffusion problems.

Same discretisation, data, reference θ and objective as :mod:`krylov_adjoint.gallery`, so
gradients agree with the serial backend to round-off, with the operator applied matrix-free on
a :class:`StructuredGrid`: the library exchanges the ghosts of x, λ and θ, and the callbacks
are local stencils. The Dirichlet diffusion problems build their data on each rank's cells
only (the fields are formulas of the cell centres; the random perturbation of θ is drawn as
one stream in chunks, O(N) time and O(N / ranks) memory); the Neumann and convection problems
slice the serial model (O(N) memory per rank, for tests and small runs). The serial model of
any of them is :attr:`DistributedModel.serial`, built on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp

from ... import gallery as serial_gallery
from ...gallery import ModelProblem
from ...gallery._blocks import BlockMap
from ...gallery._synthetic import (
    log_conductivity_at,
    observed_cells,
    smooth_state_at,
)
from ...gallery.diffusion import model_name
from ...problem import LeastSquaresMisfit, LinearFunctional, Nullspace, Objective, RightHandSide
from .diffusion import LocalDiffusion
from .dmda import StructuredGrid
from .layout import Layout
from .problem import DistributedOperator, DistributedProblem
from .stencil import LocalStencil

__all__ = ["DistributedModel", "diffusion_2d", "diffusion_3d", "convection_diffusion_2d",
           "neumann_diffusion_2d", "distribute_objective"]


@dataclass(frozen=True, eq=False)
class DistributedModel:
    """A distributed model problem and its serial reference.

    Attributes
    ----------
    problem : DistributedProblem
    theta : ndarray
        This rank's part of the reference θ.
    name : str
    grid : StructuredGrid
    build_serial : callable
        ``() -> ModelProblem``: the serial model with the same data (see :attr:`serial`).
    blocks : int
        θ is ``blocks`` cell fields one after another (2 for convection–diffusion with
        θ = [θ_d, f]); each rank holds its cells of each field, in that order.
    """

    problem: DistributedProblem = field(repr=False)
    theta: np.ndarray = field(repr=False)
    name: str
    grid: StructuredGrid = field(repr=False)
    build_serial: Callable[[], ModelProblem] = field(repr=False)
    blocks: int = 1

    @cached_property
    def serial(self) -> ModelProblem:
        """The serial model with the same data (global arrays on this rank, built on first
        use), for references."""
        return self.build_serial()

    def local_theta(self, full: np.ndarray) -> np.ndarray:
        """This rank's part of a θ in the serial ordering."""
        n = self.grid.layout.size
        full = np.asarray(full)
        return np.concatenate([self.grid.local_part(full[k * n:(k + 1) * n])
                               for k in range(self.blocks)])

    def gather_theta(self, local: np.ndarray, root: int | None = 0) -> np.ndarray | None:
        """Collective: a θ-like vector (e.g. the gradient) in the serial ordering."""
        m = self.grid.layout.local_size
        parts = [self.grid.gather(np.asarray(local)[k * m:(k + 1) * m], root)
                 for k in range(self.blocks)]
        return None if parts[0] is None else np.concatenate(parts)

    def gather_state(self, local: np.ndarray, root: int | None = 0) -> np.ndarray | None:
        """Collective: a state (x, λ) in the serial ordering."""
        return self.grid.gather(local, root)


class _LeadingCells:
    """The ghost exchange of the first cell field of a θ holding several (a Halo)."""

    def __init__(self, grid: StructuredGrid) -> None:
        self.grid = grid

    def exchange(self, vec: Any, slot: str) -> np.ndarray:
        owned = vec.getArray(readonly=True)[: self.grid.layout.local_size]
        return self.grid.exchange_array(owned, slot)


def diffusion_2d(nx: int, ny: int | None = None, *, comm: Any = None,
                 proc_sizes: tuple[int, int] | None = None, observe_every: int = 4,
                 seed: int = 0) -> DistributedModel:
    """−∇·(e^θ∇u) = f on the unit square, θ per cell, distributed (see the serial one).

    Examples
    --------
    >>> from krylov_adjoint.backends.petsc import gallery
    >>> model = gallery.diffusion_2d(6, 4)
    >>> model.problem.n, model.problem.n_params, model.name
    (24, 24, 'diffusion_2d[6x4]')
    """
    shape = (int(nx), int(nx if ny is None else ny))
    return _local_diffusion(
        shape, "diffusion_2d", observe_every, seed, comm, proc_sizes,
        lambda: serial_gallery.diffusion_2d(nx, ny, observe_every=observe_every, seed=seed))


def diffusion_3d(n: int | tuple[int, int, int], *, comm: Any = None,
                 proc_sizes: tuple[int, int, int] | None = None, observe_every: int = 4,
                 seed: int = 0) -> DistributedModel:
    """−∇·(e^θ∇u) = f on the unit cube, θ per cell, distributed (see the serial one).

    Examples
    --------
    >>> from krylov_adjoint.backends.petsc import gallery
    >>> gallery.diffusion_3d(4).problem.n
    64
    """
    shape = (int(n),) * 3 if np.isscalar(n) else tuple(int(m) for m in n)  # type: ignore[arg-type]
    return _local_diffusion(
        shape, "diffusion_3d", observe_every, seed, comm, proc_sizes,
        lambda: serial_gallery.diffusion_3d(n, observe_every=observe_every, seed=seed))


def neumann_diffusion_2d(nx: int, ny: int | None = None, *, comm: Any = None,
                         proc_sizes: tuple[int, int] | None = None, observe_every: int = 4,
                         rhs: str = "check", seed: int = 0) -> DistributedModel:
    """Pure-Neumann diffusion, singular (the constants), distributed (see the serial one).

    The nullspace is declared on the operator as this rank's rows of the constant vector;
    the backend hands it to PETSc (``MatSetNullSpace``, ``MatSetTransposeNullSpace`` and,
    for GAMG, ``MatSetNearNullSpace``).

    Examples
    --------
    >>> from krylov_adjoint.backends.petsc import gallery
    >>> model = gallery.neumann_diffusion_2d(6)
    >>> model.problem.operator.nullspace.rhs
    'check'
    """
    serial = serial_gallery.neumann_diffusion_2d(nx, ny, observe_every=observe_every,
                                                 rhs=rhs, seed=seed)
    return _diffusion(serial, comm, proc_sizes, neumann=True)


def _local_diffusion(shape: tuple[int, ...], family: str, observe_every: int, seed: int,
                     comm: Any, proc_sizes: Any,
                     build_serial: Callable[[], ModelProblem]) -> DistributedModel:
    """The serial model's data (θ★, θ, b = A(θ★)u★, observations of u★) on this rank's cells.

    The formulas of :func:`krylov_adjoint.gallery.diffusion_2d` evaluated on the owned (and
    ghosted) cell centres; θ's perturbation is the serial stream's entries at the owned cells.
    """
    grid = StructuredGrid(shape, comm=comm, proc_sizes=proc_sizes)
    owned, ghosted = grid.coordinates(), grid.coordinates(ghosted=True)
    theta_true = log_conductivity_at(owned)
    theta = theta_true + 0.25 * _standard_normal_at(seed, grid.layout.size,
                                                    grid.natural_indices())
    truth = LocalDiffusion(grid, log_conductivity_at(ghosted))
    b = truth.stencil.apply(smooth_state_at(ghosted))
    objective = _owned_observations(grid, observe_every, smooth_state_at(owned))
    problem = DistributedProblem(_diffusion_operator(grid), b, objective,
                                 theta_layout=grid.layout)
    name = model_name(family, grid.shape, BlockMap(grid.shape, 1))
    return DistributedModel(problem, theta, name, grid, build_serial)


def _diffusion(serial: ModelProblem, comm: Any, proc_sizes: Any, *,
               neumann: bool = False) -> DistributedModel:
    """A serial diffusion model sliced onto the ranks (O(N) memory per rank)."""
    grid = StructuredGrid(serial.grid, comm=comm, proc_sizes=proc_sizes)
    operator = _diffusion_operator(grid, neumann=neumann,
                                   nullspace=_local_nullspace(serial, grid))
    p = serial.problem
    b = grid.local_part(p.rhs.value(None))
    problem = DistributedProblem(operator, b, distribute_objective(p.objective, grid),
                                 theta_layout=grid.layout)
    return DistributedModel(problem, grid.local_part(serial.theta), serial.name, grid,
                            lambda: serial)


def _diffusion_operator(grid: StructuredGrid, *, neumann: bool = False,
                        nullspace: Nullspace | None = None) -> DistributedOperator:
    """−∇·(e^θ∇u) by local stencils, θ per cell: products, VJPs, JVPs, the assembled rows."""
    state: dict[str, LocalDiffusion] = {}

    def prepare(theta: np.ndarray) -> None:
        state.clear()  # the last θ's coefficients go before the new ones are made
        state["k"] = LocalDiffusion(grid, theta, neumann=neumann)

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return state["k"].stencil.apply(x)

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return state["k"].vjp_cells(x, lam)

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return state["k"].jvp_stencil(dtheta).apply(x)

    def vjp_jvp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray:
        return state["k"].vjp_jvp_cells(x, lam, dtheta)

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        return state["k"].stencil.rows()

    # ∂A/∂θ·dθ is symmetric: the transpose of the JVP operator is the JVP
    return DistributedOperator(matvec, layout=grid.layout, vjp=vjp, jvp=jvp,
                               vjp_jvp=vjp_jvp, jvp_transpose=jvp, structure="spd",
                               assemble=assemble, prepare=prepare, halo=grid,
                               theta_halo=grid, nullspace=nullspace)


def _standard_normal_at(seed: int, n: int, indices: np.ndarray,
                        chunk: int = 1 << 20) -> np.ndarray:
    """Entries ``indices`` of ``default_rng(seed).standard_normal(n)``: the stream drawn in
    chunks (the same numbers), only the wanted ones kept: O(n) time, O(chunk) memory."""
    rng = np.random.default_rng(seed)
    order = np.argsort(indices, kind="stable")
    wanted = np.asarray(indices)[order]
    out = np.empty(wanted.size)
    for start in range(0, n, chunk):
        draws = rng.standard_normal(min(chunk, n - start))
        lo, hi = np.searchsorted(wanted, [start, start + draws.size])
        out[order[lo:hi]] = draws[wanted[lo:hi] - start]
    return out


def _owned_observations(grid: StructuredGrid, every: int,
                        state: np.ndarray) -> LeastSquaresMisfit:
    """The point observations of ``state`` (this rank's cells, local order) at the owned
    sensors of the serial lattice (:func:`~krylov_adjoint.gallery.point_observations`)."""
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise ValueError(f"observe_every must be an integer >= 1, got {every!r}")
    picks = []
    for owned, lattice in zip(grid.owned, observed_cells(grid.shape, int(every)), strict=True):
        cells = np.arange(owned.start, owned.stop)
        on = (cells >= lattice.start) & ((cells - lattice.start) % lattice.step == 0)
        picks.append(np.flatnonzero(on))
    n_local = grid.layout.local_size
    picked = np.arange(n_local).reshape(grid.owned_shape)[np.ix_(*picks)].reshape(-1)
    observe = sp.csr_matrix((np.ones(picked.size), (np.arange(picked.size), picked)),
                            shape=(picked.size, n_local))
    return LeastSquaresMisfit(observe, state[picked])


def _local_nullspace(serial: ModelProblem, grid: StructuredGrid) -> Nullspace | None:
    """This rank's rows of the serial model's (constant) nullspace, with its policy."""
    declared = serial.problem.operator.nullspace
    if declared is None:
        return None
    Z = declared.columns(serial.theta, serial.n)[0]
    return Nullspace(Z[grid.natural_indices()], rhs=declared.rhs,
                     consistency_rtol=declared.consistency_rtol, null_rtol=declared.null_rtol)


def convection_diffusion_2d(nx: int, ny: int | None = None, *, peclet: float = 100.0,
                            velocity: str = "rotating", parameters: str = "both",
                            comm: Any = None, proc_sizes: tuple[int, int] | None = None,
                            observe_every: int = 4, seed: int = 0) -> DistributedModel:
    """Upwind convection–diffusion, nonsymmetric, distributed (see the serial one).

    ``parameters`` is ``"both"`` (θ = [θ_d, f]: each rank holds its cells' log-diffusivities
    then their sources) or ``"diffusivity"``.

    Examples
    --------
    >>> from krylov_adjoint.backends.petsc import gallery
    >>> model = gallery.convection_diffusion_2d(5, 4, peclet=50)
    >>> model.problem.n, model.problem.n_params, model.problem.structure.name
    (20, 40, 'GENERAL')
    """
    if parameters not in ("both", "diffusivity"):
        raise ValueError(f"parameters must be 'both' or 'diffusivity', got {parameters!r}")
    serial = serial_gallery.convection_diffusion_2d(
        nx, ny, peclet=peclet, velocity=velocity, parameters=parameters,
        observe_every=observe_every, seed=seed)
    grid = StructuredGrid(serial.grid, comm=comm, proc_sizes=proc_sizes)
    both = parameters == "both"
    n_local = grid.layout.local_size
    upwind = serial_gallery._upwind.upwind_stencil(serial.grid, velocity)
    convection = LocalStencil.from_global(grid, upwind.diagonal, upwind.upper, upwind.lower)
    state: dict[str, Any] = {}

    def prepare(theta: np.ndarray) -> None:
        diffusion = LocalDiffusion(grid, theta, scale=1.0 / peclet)
        state["d"], state["A"] = diffusion, diffusion.stencil + convection

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return state["A"].apply(x)

    def rmatvec(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        return state["A"].apply_transpose(y)

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        per_cell = state["d"].vjp_cells(x, lam)
        return np.concatenate([per_cell, np.zeros(n_local)]) if both else per_cell

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return state["d"].jvp_stencil(dtheta).apply(x)

    def vjp_jvp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray:
        per_cell = state["d"].vjp_jvp_cells(x, lam, dtheta)
        return np.concatenate([per_cell, np.zeros(n_local)]) if both else per_cell

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        return state["A"].rows()

    # only the (symmetric) diffusion depends on θ: the JVP operator is its own transpose
    theta_halo = _LeadingCells(grid) if both else grid
    operator = DistributedOperator(matvec, layout=grid.layout, rmatvec=rmatvec, vjp=vjp,
                                   jvp=jvp, vjp_jvp=vjp_jvp, jvp_transpose=jvp,
                                   structure="general", assemble=assemble, prepare=prepare,
                                   halo=grid, theta_halo=theta_halo)
    p = serial.problem
    if both:
        rhs = RightHandSide(lambda th: np.array(th[n_local:]),
                            vjp=lambda th, lam: np.concatenate([np.zeros(n_local), lam]),
                            jvp=lambda th, dth: np.array(dth[n_local:]),
                            vjp_jvp=lambda th, lam, dth: np.zeros(2 * n_local))
        theta_layout = Layout.create(local_size=2 * n_local, comm=grid.comm, name="theta")
    else:
        rhs = RightHandSide(grid.local_part(p.rhs.value(None)))
        theta_layout = grid.layout
    problem = DistributedProblem(operator, rhs, distribute_objective(p.objective, grid),
                                 theta_layout=theta_layout)
    model = DistributedModel(problem, np.empty(0), serial.name, grid, lambda: serial,
                             blocks=2 if both else 1)
    object.__setattr__(model, "theta", model.local_theta(serial.theta))
    return model


def distribute_objective(objective: Objective, grid: StructuredGrid) -> Objective:
    """This rank's piece (local semantics) of a serial objective on the grid's cells.

    Supports :class:`~krylov_adjoint.LinearFunctional` and
    :class:`~krylov_adjoint.LeastSquaresMisfit` whose observations each read one cell (or
    the identity).
    """
    natural = grid.natural_indices()
    if isinstance(objective, LinearFunctional):
        return LinearFunctional(objective.c[natural])
    if not isinstance(objective, LeastSquaresMisfit):
        raise TypeError(f"cannot distribute a {type(objective).__name__}; build the local "
                        "objective directly")
    d, w = objective.d, objective.weights
    if objective.O is None:
        return LeastSquaresMisfit(None, d[natural], weights=None if w is None else w[natural])
    O = sp.csr_matrix(objective.O)
    if np.any(np.diff(O.indptr) != 1):
        raise ValueError("only observations of single cells can be distributed")
    cell = O.indices
    position = np.full(grid.layout.size, -1)
    position[natural] = np.arange(natural.size)
    mine = np.flatnonzero(position[cell] >= 0)
    observe = sp.csr_matrix((O.data[mine], (np.arange(mine.size), position[cell[mine]])),
                            shape=(mine.size, natural.size))
    return LeastSquaresMisfit(observe, d[mine], weights=None if w is None else w[mine])

"""An EIT-like model: −∇·(e^θ ∇u) = fₛ for S boundary current patterns, boundary potentials
measured for each, θ a log-conductivity per cell."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError
from ..problem import AdjointProblem, LeastSquaresMisfit, ParametricOperator, Sources
from ._blocks import BlockMap
from ._harmonic import HarmonicDiffusion
from ._prepared import Prepared
from ._reference import check_reference_size, matrices_from_entries
from ._stencil import FluxStencil, boundary_slices, interior_slices
from ._synthetic import log_conductivity_field
from ._validate import check_grid
from .model import ModelProblem

__all__ = ["EITModel", "eit_2d"]


@dataclass(frozen=True, eq=False)
class EITModel:
    """A many-source model problem: one operator A(θ), S sources and their data.

    Attributes
    ----------
    model : ModelProblem
        The operator with source 0's right-hand side and misfit (a single-source problem,
        to make a solver from), θ = 0 (a homogeneous guess), the grid and, for small N, the
        explicit ∂A/∂θ.
    sources : Sources
        bₛ (fixed current patterns, N × S) and Jₛ = ½‖O xₛ − dₛ‖² / S.
    theta_true : ndarray, shape (N,)
        The log-conductivity the data come from (two inclusions).
    electrodes : ndarray of int
        The boundary cells carrying the electrodes, in order around the boundary.
    observe : scipy.sparse matrix, shape (M, N)
        O: the potentials of every boundary cell.
    """

    model: ModelProblem = field(repr=False)
    sources: Sources = field(repr=False)
    theta_true: np.ndarray = field(repr=False)
    electrodes: np.ndarray = field(repr=False)
    observe: sp.csr_matrix = field(repr=False)

    @property
    def operator(self) -> ParametricOperator:
        """A(θ), declared ``block=True``."""
        return self.model.problem.operator  # type: ignore[return-value]


def eit_2d(nx: int, ny: int | None = None, *, n_sources: int = 16, contact: float = 0.01,
           noise: float = 0.0, seed: int = 0) -> EITModel:
    """An EIT-like problem on the unit square: S dipole current patterns on the boundary.

    Parameters
    ----------
    nx, ny : int
        Cells along x and y (``ny`` defaults to ``nx``); N = P = nx·ny.
    n_sources : int
        S. Electrode s sits on the s-th of S boundary cells evenly spaced around the
        boundary; pattern s drives a unit current in at electrode s and out at electrode
        s + 1 (mod S), the "adjacent" EIT pattern.
    contact : float
        The conductance from each boundary cell to the ground, relative to a Dirichlet
        condition half a cell away: small, so that the currents spread through the domain
        (as with insulated walls) while A stays SPD.
    noise : float
        Relative standard deviation of Gaussian noise added to the data.
    seed : int
        Seed of the noise.

    Returns
    -------
    EITModel

    Notes
    -----
    The discretisation of :func:`~krylov_adjoint.gallery.diffusion_2d` (cell-centred finite
    volumes, harmonic face conductances), with a weak leak to the ground from every boundary
    cell (``contact`` times the half-cell Dirichlet conductance), so that A is SPD. The
    operator is declared
    ``block=True``: ``matvec`` applies the matrix assembled once per θ (in ``prepare``) to a
    vector or an (N, S) block, and ``vjp`` sums the per-cell sensitivities over the columns of
    (N, S) blocks in one vectorised pass. The data are computed by a sparse direct solve at
    ``theta_true`` (one factorisation, S triangular solves).

    Examples
    --------
    >>> eit = eit_2d(12, n_sources=8)
    >>> eit.model.n, len(eit.sources), eit.observe.shape
    (144, 8, (44, 144))
    >>> eit.operator.block
    True
    """
    shape = check_grid((nx, nx if ny is None else ny))
    if isinstance(n_sources, bool) or not isinstance(n_sources, int | np.integer) \
            or not 1 <= n_sources <= 2 * (shape[0] + shape[1]) - 4:
        raise InputError("n_sources", f"expected an integer between 1 and the number of "
                                      f"boundary cells, {2 * (shape[0] + shape[1]) - 4}, got "
                                      f"{n_sources!r}")
    if not (isinstance(contact, int | float) and 0.0 < contact <= 1.0):
        raise InputError("contact", f"expected a number in (0, 1], got {contact!r}")
    spacing = tuple(1.0 / m for m in shape)
    n = int(np.prod(shape))
    blocks = BlockMap(shape, 1)

    def coefficients_at(theta: np.ndarray) -> tuple[HarmonicDiffusion, sp.csr_matrix]:
        harmonic = HarmonicDiffusion(theta, shape, spacing)
        for a in range(len(shape)):  # the weak contact: every boundary term scaled alike
            harmonic.low[a] = contact * harmonic.low[a]
            harmonic.high[a] = contact * harmonic.high[a]
        harmonic.stencil = FluxStencil.from_fluxes(shape, harmonic.T, harmonic.T,
                                                   harmonic.low, harmonic.high)
        return harmonic, harmonic.stencil.assemble()

    coefficients = Prepared(coefficients_at)

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return coefficients(theta)[1] @ x

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return _vjp_cells(coefficients(theta)[0], x, lam)

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return coefficients(theta)[0].jvp_stencil(dtheta).apply(x)

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        return coefficients(theta)[1]

    def derivative_matrices(theta: np.ndarray) -> list[sp.csr_matrix]:
        check_reference_size(n, "derivative_matrices")
        entries = coefficients_at(theta)[0].derivative_entries(blocks.index)
        return matrices_from_entries(n, n, *entries)

    operator = ParametricOperator(matvec, n=n, vjp=vjp, jvp=jvp, structure="spd",
                                  assemble=assemble, prepare=coefficients.prepare, block=True)
    boundary = _boundary_cells(shape)
    electrodes = boundary[np.linspace(0, boundary.size, n_sources, endpoint=False).astype(int)]
    area = float(np.prod(spacing))
    currents = np.zeros((n, n_sources))
    for s in range(n_sources):
        currents[electrodes[s], s] += 1.0 / area
        currents[electrodes[(s + 1) % n_sources], s] -= 1.0 / area
    if n_sources == 1:
        currents[electrodes[0], 0] = 1.0 / area
    observe = sp.csr_matrix((np.ones(boundary.size), (np.arange(boundary.size), boundary)),
                            shape=(boundary.size, n))
    theta_true = log_conductivity_field(shape)
    states = spla.splu(coefficients_at(theta_true)[1].tocsc()).solve(currents)
    data = observe @ states
    if noise:
        rng = np.random.default_rng(seed)
        data = data + noise * np.abs(data).max(axis=0) * rng.standard_normal(data.shape)
    weights = np.full(boundary.size, 1.0 / n_sources)
    objectives = [LeastSquaresMisfit(observe, data[:, s], weights=weights)
                  for s in range(n_sources)]
    sources = Sources(currents, objectives)
    problem = AdjointProblem(operator, *sources.single(0), n_params=n)
    size = "x".join(str(m) for m in shape)
    model = ModelProblem(problem, np.zeros(n), f"eit_2d[{size},S={n_sources}]", shape,
                         derivative_matrices=derivative_matrices, theta_true=theta_true)
    return EITModel(model, sources, model.theta_true, electrodes,  # type: ignore[arg-type]
                    observe)


def _vjp_cells(harmonic: HarmonicDiffusion, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``[Σₛ λₛᵀ(∂A/∂θ_c)xₛ]_c`` for a vector or the columns of (N, S) blocks, flat: the
    per-cell sensitivities of :meth:`HarmonicDiffusion.vjp_cells` with a trailing source
    axis summed over."""
    shape, ndim = harmonic.shape, len(harmonic.shape)
    U = np.asarray(x).reshape(shape + (-1,))
    L = np.asarray(lam).reshape(shape + (-1,))
    grad = np.zeros(shape)
    for a in range(ndim):
        left, right = interior_slices(ndim, a)
        first, last = boundary_slices(ndim, a)
        face = harmonic.T[a] * np.einsum("...s,...s->...", U[left] - U[right],
                                         L[left] - L[right])
        to_left = face * harmonic.weight_left[a]
        grad[left] += to_left
        grad[right] += face - to_left
        grad[first] += harmonic.low[a] * np.einsum("...s,...s->...", U[first], L[first])
        grad[last] += harmonic.high[a] * np.einsum("...s,...s->...", U[last], L[last])
    return grad.reshape(-1)


def _boundary_cells(shape: tuple[int, int]) -> np.ndarray:
    """The boundary cells (C order index over ``shape``), counter-clockwise from (0, 0)."""
    nx, ny = shape
    index = np.arange(nx * ny).reshape(shape)
    bottom = index[:, 0]
    right = index[-1, 1:]
    top = index[-2::-1, -1]
    left = index[0, -2:0:-1]
    return np.concatenate([bottom, right, top, left])

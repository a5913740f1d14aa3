"""Steady diffusion −∇·(e^θ ∇u) = f on the unit square or cube, per-cell or per-block θ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from ..errors import InputError
from ..problem import AdjointProblem, Objective, ParametricOperator
from ._blocks import BlockMap
from ._harmonic import HarmonicDiffusion
from ._prepared import Prepared
from ._reference import check_reference_size, matrices_from_entries
from ._synthetic import log_conductivity_field, smooth_state, synthetic_misfit
from ._validate import check_cell_values, check_grid
from .model import ModelProblem

__all__ = ["diffusion_2d", "diffusion_3d"]


def diffusion_2d(nx: int, ny: int | None = None, *, block: int | tuple[int, int] = 1,
                 source: float | ArrayLike | None = None, observe_every: int = 4,
                 objective: Objective | None = None, seed: int = 0) -> ModelProblem:
    """−∇·(e^θ ∇u) = f on the unit square, θ a log-conductivity per cell or per block.

    Parameters
    ----------
    nx, ny : int
        Cells along x and y (``ny`` defaults to ``nx``); N = nx·ny, ``grid == (nx, ny)``.
    block : int or (int, int)
        Cells per parameter block along each axis (an int for both). θ holds one value per
        block, numbered in C order over ``(ceil(nx/bx), ceil(ny/by))``; the last block along
        an axis may be smaller. ``block=1`` (default) gives P = N.
    source : float or array of N, optional
        f. Default: manufactured from the smooth state ``u★ = sin(πx) sin(πy)`` as
        ``f = A(θ★) u★``, so that the synthetic data need no solve.
    observe_every : int
        The default objective observes every ``observe_every``-th cell along each axis.
    objective : Objective, optional
        Default: ``LeastSquaresMisfit(O, O u★)``, with O the point observations and u★ the
        state at ``theta_true`` (θ★, a smooth field with two inclusions averaged over blocks).
        With a user ``source``, u★ comes from one sparse direct solve: pass an objective to
        avoid it on large grids.
    seed : int
        Seed of the perturbation giving the reference ``theta = θ★ + 0.25·N(0, 1)``.

    Returns
    -------
    ModelProblem
        SPD, b independent of θ (``rhs_derivative`` is None). The operator has the
        second-order callbacks ``vjp_jvp`` and ``jvp_transpose`` (equal to ``jvp``: every
        ∂A/∂θ_k is symmetric).

    Notes
    -----
    Cell-centred finite volumes on a uniform grid of the unit domain (``h_a = 1/n_a``): the
    face conductance is the harmonic mean of the two cell conductivities and the Dirichlet
    condition ``u = 0`` is imposed half a cell beyond the boundary cells. Row ``c`` of A is
    the net flux out of cell ``c`` divided by its area, so A is SPD with the usual ``1/h²``
    scaling. The callbacks are vectorised stencils over the reshaped grid, O(N) in time and
    memory; the coefficients of the last θ are kept for reuse. The VJP sums the per-cell
    sensitivities over each block.

    Examples
    --------
    >>> model = diffusion_2d(6, 4, block=(3, 2))
    >>> model.n, model.n_params, model.grid
    (24, 4, (6, 4))
    >>> x = model.problem.b(model.theta)
    >>> model.problem.operator_vjp(model.theta, x, x).shape
    (4,)
    """
    shape = check_grid((nx, nx if ny is None else ny))
    return _diffusion(shape, "diffusion_2d", block, source, observe_every, objective, seed)


def diffusion_3d(n: int | tuple[int, int, int], *, block: int | tuple[int, int, int] = 1,
                 source: float | ArrayLike | None = None, observe_every: int = 4,
                 objective: Objective | None = None, seed: int = 0) -> ModelProblem:
    """−∇·(e^θ ∇u) = f on the unit cube, θ a log-conductivity per cell or per block.

    Parameters
    ----------
    n : int or (int, int, int)
        Cells along each axis (an int for a cube); ``grid == (nx, ny, nz)``.
    block, source, observe_every, objective, seed
        As in :func:`diffusion_2d`, in three dimensions (``u★ = sin(πx) sin(πy) sin(πz)``).

    Returns
    -------
    ModelProblem
        SPD, b independent of θ.

    Notes
    -----
    The discretisation of :func:`diffusion_2d` with one more axis (a 7-point stencil).

    Examples
    --------
    >>> model = diffusion_3d(4, block=2)
    >>> model.n, model.n_params
    (64, 8)
    """
    shape = check_grid((n, n, n) if np.isscalar(n) else tuple(n))  # type: ignore[arg-type]
    if len(shape) != 3:
        raise InputError("n", f"expected an int or 3 grid sizes, got {n!r}")
    return _diffusion(shape, "diffusion_3d", block, source, observe_every, objective, seed)


def _diffusion(shape: tuple[int, ...], family: str, block: int | tuple[int, ...],
               source: float | ArrayLike | None, observe_every: int,
               objective: Objective | None, seed: int) -> ModelProblem:
    if isinstance(observe_every, bool) or int(observe_every) != observe_every \
            or observe_every < 1:
        raise InputError("observe_every", f"expected an integer >= 1, got {observe_every!r}")
    blocks = BlockMap(shape, block)
    n, n_params = int(np.prod(shape)), blocks.n_params
    operator, coefficients_at, derivative_matrices = harmonic_operator(shape, blocks)
    theta_true = blocks.average(log_conductivity_field(shape))
    theta = theta_true + 0.25 * np.random.default_rng(seed).standard_normal(n_params)
    truth = coefficients_at(theta_true).stencil
    if source is None:
        state = smooth_state(shape)
        b = truth.apply(state)
    else:
        b = check_cell_values(source, "source", n)
        state = None
    if objective is None:
        objective = synthetic_misfit(shape, observe_every, truth, b, state)
    else:
        theta_true = None
    problem = AdjointProblem(operator, b, objective, n_params=n_params)
    return ModelProblem(problem, theta, model_name(family, shape, blocks), shape,
                        derivative_matrices=derivative_matrices, theta_true=theta_true)


def harmonic_operator(shape: tuple[int, ...], blocks: BlockMap, *, neumann: bool = False,
                      nullspace: Any = None
                      ) -> tuple[ParametricOperator, Callable[[np.ndarray], HarmonicDiffusion],
                                 Callable[[np.ndarray], list[sp.csr_matrix]]]:
    """The finite-volume operator −∇·(e^θ∇·) with harmonic face means, θ per block.

    Returns the operator (matvec, VJP, JVP, second-order products, ``assemble``; the
    coefficients computed once per θ by its ``prepare``), the coefficients at a θ, and the
    explicit ∂A/∂θ_k (small grids, for references). ``neumann`` gives zero-flux boundaries
    (then declare the ``nullspace``).
    """
    spacing = tuple(1.0 / m for m in shape)
    n, n_params = int(np.prod(shape)), blocks.n_params

    def coefficients_at(theta: np.ndarray) -> HarmonicDiffusion:
        return HarmonicDiffusion(blocks.expand(theta), shape, spacing, neumann=neumann)

    coefficients = Prepared(coefficients_at)

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return coefficients(theta).stencil.apply(x)

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return blocks.reduce(coefficients(theta).vjp_cells(x, lam))

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return coefficients(theta).jvp_stencil(blocks.expand(dtheta)).apply(x)

    def vjp_jvp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray:
        return blocks.reduce(coefficients(theta).vjp_jvp_cells(x, lam, blocks.expand(dtheta)))

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        return coefficients(theta).stencil.assemble()

    def derivative_matrices(theta: np.ndarray) -> list[sp.csr_matrix]:
        check_reference_size(n, "derivative_matrices")
        entries = coefficients_at(theta).derivative_entries(blocks.index)
        return matrices_from_entries(n, n_params, *entries)

    # ∂A/∂θ·dθ is a symmetric stencil: jvp is its own transpose.
    operator = ParametricOperator(matvec, n=n, vjp=vjp, jvp=jvp, structure="spd",
                                  assemble=assemble, prepare=coefficients.prepare,
                                  vjp_jvp=vjp_jvp, jvp_transpose=jvp, nullspace=nullspace)
    return operator, coefficients_at, derivative_matrices


def model_name(family: str, shape: tuple[int, ...], blocks: BlockMap) -> str:
    """``family[nxxny]``, with the block size when θ is per block."""
    size = "x".join(str(m) for m in shape)
    if blocks.is_identity:
        return f"{family}[{size}]"
    return f"{family}[{size},block={'x'.join(str(b) for b in blocks.block)}]"

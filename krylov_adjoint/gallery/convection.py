"""Steady upwind convection–diffusion on the unit square: a nonsymmetric model problem."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from ..errors import InputError
from ..problem import (
    AdjointProblem,
    Objective,
    ParametricOperator,
    RightHandSide,
)
from ._harmonic import HarmonicDiffusion
from ._prepared import Prepared
from ._reference import check_reference_size, matrices_from_entries
from ._stencil import FluxStencil
from ._synthetic import log_conductivity_field, smooth_state, synthetic_misfit
from ._upwind import VELOCITY_FIELDS, upwind_stencil
from ._validate import check_cell_values, check_choice, check_grid, check_positive
from .model import ModelProblem

__all__ = ["convection_diffusion_2d"]

PARAMETER_LAYOUTS = ("both", "diffusivity", "source")


def convection_diffusion_2d(nx: int, ny: int | None = None, *, peclet: float = 100.0,
                            velocity: str = "rotating", parameters: str = "both",
                            source: float | ArrayLike | None = None, observe_every: int = 4,
                            objective: Objective | None = None, seed: int = 0
                            ) -> ModelProblem:
    """−∇·(κ∇u) + w·∇u = f on the unit square, κ and f per cell; upwind, nonsymmetric.

    ``κ = exp(θ_d) / peclet`` per cell (so θ_d = 0 gives Péclet number ``peclet`` for the
    unit-speed fields and unit length), diffused with the scheme of
    :func:`~krylov_adjoint.gallery.diffusion_2d` (harmonic means, ``u = 0`` half a cell outside);
    convection by first-order upwinding of a discretely divergence-free field, with inflow value
    0. A is a nonsingular M-matrix, not symmetric.

    Parameters
    ----------
    nx, ny : int
        Cells along x and y (``ny`` defaults to ``nx``); N = nx·ny, ``grid == (nx, ny)``.
    peclet : float
        Péclet number, e.g. 1 (diffusion-dominated) to 1000 (convection-dominated).
    velocity : {"rotating", "constant"}
        Solid-body rotation about the centre (speed 1 at the corners) or a uniform unit
        field at 30° to the x axis.
    parameters : {"both", "diffusivity", "source"}
        The layout of θ. ``"both"``: ``θ = [θ_d, f]``, P = 2N, the log-diffusivities of the N
        cells followed by the N cell sources (A and b depend on θ). ``"diffusivity"``:
        ``θ = θ_d``, P = N, b fixed. ``"source"``: ``θ = f``, P = N, A fixed at θ_d = 0 (its
        ``derivative_matrices`` is None).
    source : float or array of N, optional
        The fixed f in the ``"diffusivity"`` layout. Default: manufactured, ``f = A(θ★) u★``
        with ``u★ = sin(πx) sin(πy)``, so that the synthetic data need no solve (with a user
        source, the default objective needs one sparse direct solve).
    observe_every : int
        The default objective observes every ``observe_every``-th cell along each axis.
    objective : Objective, optional
        Default: ``LeastSquaresMisfit(O, O u★)``, point observations of the state u★ at
        ``theta_true``: θ★_d a smooth field with two inclusions, and the manufactured source.
    seed : int
        Seed of the perturbation giving the reference ``theta`` (θ★_d + 0.25·N(0, 1), and the
        sources perturbed by 25 % of their RMS value).

    Returns
    -------
    ModelProblem
        With the second-order callbacks: the operator's ``vjp_jvp`` and ``jvp_transpose``
        (equal to ``jvp``: only the symmetric diffusion depends on θ) and a zero rhs
        ``vjp_jvp`` (b is linear in θ).

    Examples
    --------
    >>> import numpy as np
    >>> model = convection_diffusion_2d(5, 4, peclet=50)
    >>> model.n, model.n_params
    (20, 40)
    >>> A = model.problem.assemble(model.theta).toarray()
    >>> bool(np.allclose(A, A.T))
    False
    """
    shape = check_grid((nx, nx if ny is None else ny))
    peclet = check_positive(peclet, "peclet")
    check_choice(velocity, "velocity", VELOCITY_FIELDS)
    check_choice(parameters, "parameters", PARAMETER_LAYOUTS)
    if isinstance(observe_every, bool) or int(observe_every) != observe_every \
            or observe_every < 1:
        raise InputError("observe_every", f"expected an integer >= 1, got {observe_every!r}")
    if source is not None and parameters != "diffusivity":
        raise InputError("source", f"the source is part of θ in the {parameters!r} layout; "
                         "pass source=... only with parameters='diffusivity'")
    n = shape[0] * shape[1]
    spacing = (1.0 / shape[0], 1.0 / shape[1])
    convection = upwind_stencil(shape, velocity)
    has_diffusivity = parameters != "source"
    has_source = parameters != "diffusivity"
    n_params = n * (int(has_diffusivity) + int(has_source))

    def diffusion_at(log_k: np.ndarray) -> HarmonicDiffusion:
        return HarmonicDiffusion(log_k, shape, spacing, scale=1.0 / peclet)

    def combined(log_k: np.ndarray) -> tuple[HarmonicDiffusion, FluxStencil]:
        diffusion = diffusion_at(log_k)
        return diffusion, diffusion.stencil + convection

    fixed = combined(np.zeros(n))
    cached = Prepared(lambda theta: combined(np.asarray(theta)[:n]))

    def coefficients(theta: np.ndarray) -> tuple[HarmonicDiffusion, FluxStencil]:
        """The diffusion part and the whole operator at θ (θ_d = 0 in the source layout)."""
        return cached(theta) if has_diffusivity else fixed

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return coefficients(theta)[1].apply(x)

    def rmatvec(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        return coefficients(theta)[1].apply_transpose(y)

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        per_cell = coefficients(theta)[0].vjp_cells(x, lam)
        return np.concatenate([per_cell, np.zeros(n)]) if has_source else per_cell

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        diffusion = coefficients(theta)[0]
        return diffusion.jvp_stencil(np.asarray(dtheta)[:n]).apply(x)

    def vjp_jvp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray:
        per_cell = coefficients(theta)[0].vjp_jvp_cells(x, lam, np.asarray(dtheta)[:n])
        return np.concatenate([per_cell, np.zeros(n)]) if has_source else per_cell

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        return coefficients(theta)[1].assemble()

    def derivative_matrices(theta: np.ndarray) -> list[sp.csr_matrix]:
        check_reference_size(n, "derivative_matrices")
        entries = diffusion_at(np.asarray(theta)[:n]).derivative_entries(np.arange(n))
        return matrices_from_entries(n, n, *entries) + \
            [sp.csr_matrix((n, n)) for _ in range(n_params - n)]

    if has_diffusivity:
        # Only the (symmetric) diffusion depends on θ: jvp is its own transpose.
        operator = ParametricOperator(matvec, n=n, rmatvec=rmatvec, vjp=vjp, jvp=jvp,
                                      structure="general", assemble=assemble,
                                      prepare=cached.prepare, vjp_jvp=vjp_jvp,
                                      jvp_transpose=jvp)
    else:
        operator = ParametricOperator(matvec, n=n, rmatvec=rmatvec, structure="general",
                                      assemble=assemble, depends_on_theta=False)

    rng = np.random.default_rng(seed)
    log_k_true = log_conductivity_field(shape) if has_diffusivity else np.zeros(n)
    truth = combined(log_k_true)[1]
    if source is None:
        state = smooth_state(shape)
        f_true = truth.apply(state)
    else:
        f_true = check_cell_values(source, "source", n)
        state = None
    theta_parts, true_parts = [], []
    if has_diffusivity:
        true_parts.append(log_k_true)
        theta_parts.append(log_k_true + 0.25 * rng.standard_normal(n))
    if has_source:
        rms = float(np.sqrt(np.mean(f_true**2)))
        true_parts.append(f_true)
        theta_parts.append(f_true + 0.25 * rms * rng.standard_normal(n))
    theta_true, theta = np.concatenate(true_parts), np.concatenate(theta_parts)

    if has_source:
        rhs = RightHandSide(lambda th: np.array(th[n_params - n:]),
                            vjp=lambda th, lam: _embed(lam, n_params),
                            jvp=lambda th, dth: np.array(dth[n_params - n:]),
                            vjp_jvp=lambda th, lam, dth: np.zeros(n_params))
    else:
        rhs = RightHandSide(f_true)

    def rhs_derivative(theta: np.ndarray) -> np.ndarray:
        check_reference_size(n, "rhs_derivative")
        return np.hstack([np.zeros((n, n_params - n)), np.eye(n)])

    if objective is None:
        objective = synthetic_misfit(shape, observe_every, truth, f_true, state)
    else:
        theta_true = None
    problem = AdjointProblem(operator, rhs, objective, n_params=n_params)
    name = f"convection_diffusion_2d[{shape[0]}x{shape[1]},Pe={peclet:g},{velocity},{parameters}]"
    return ModelProblem(problem, theta, name, shape,
                        derivative_matrices=derivative_matrices if has_diffusivity else None,
                        rhs_derivative=rhs_derivative if has_source else None,
                        theta_true=theta_true)


def _embed(lam: np.ndarray, n_params: int) -> np.ndarray:
    """λᵀ∂b/∂θ when b is the trailing block of θ."""
    out = np.zeros(n_params)
    out[n_params - lam.shape[0]:] = lam
    return out

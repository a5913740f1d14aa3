"""Pure-Neumann diffusion −∇·(e^θ ∇u) = f, ∂u/∂n = 0: a singular SPD model problem."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..problem import AdjointProblem, LeastSquaresMisfit, Objective, ParametricOperator
from ..problem.nullspace import Nullspace
from ._blocks import BlockMap
from ._harmonic import HarmonicDiffusion
from ._prepared import Prepared
from ._reference import check_reference_size, matrices_from_entries
from ._synthetic import cell_centres, log_conductivity_field, point_observations
from ._validate import check_grid
from .model import ModelProblem

__all__ = ["neumann_diffusion_2d"]


def neumann_diffusion_2d(nx: int, ny: int | None = None, *, block: int | tuple[int, int] = 1,
                         observe_every: int = 4, objective: Objective | None = None,
                         rhs: str = "check", seed: int = 0) -> ModelProblem:
    """−∇·(e^θ ∇u) = f on the unit square with zero-flux boundaries, θ per cell or block.

    A(θ) is symmetric positive semidefinite with the constants as its nullspace (declared on
    the operator): x is the zero-mean solution. The source ``f = A(θ★) u★`` with
    ``u★ = cos(πx) cos(πy)`` sums to zero, so the system is consistent for every θ.

    Parameters
    ----------
    nx, ny, block, observe_every, objective, seed
        As in :func:`~krylov_adjoint.gallery.diffusion_2d`.
    rhs : {"check", "project"}
        The nullspace's right-hand side policy (:class:`~krylov_adjoint.problem.nullspace.
        Nullspace`).

    Returns
    -------
    ModelProblem
        Declared ``"spd"`` (semidefinite, with its nullspace declared), b independent of θ.

    Notes
    -----
    The finite volumes of :func:`~krylov_adjoint.gallery.diffusion_2d` without boundary
    faces; ``1ᵀA(θ) = 0`` for every θ, so the nullspace does not depend on θ and the
    gradient is the usual formula (docs/method.md).

    Examples
    --------
    >>> import numpy as np
    >>> model = neumann_diffusion_2d(8)
    >>> A = model.problem.assemble(model.theta)
    >>> float(abs(A @ np.ones(model.n)).max()) < 1e-10
    True
    >>> float(model.problem.b(model.theta).sum()) < 1e-10
    True
    """
    shape = check_grid((nx, nx if ny is None else ny))
    if isinstance(observe_every, bool) or int(observe_every) != observe_every \
            or observe_every < 1:
        raise InputError("observe_every", f"expected an integer >= 1, got {observe_every!r}")
    spacing = tuple(1.0 / m for m in shape)
    blocks = BlockMap(shape, block)
    n, n_params = int(np.prod(shape)), blocks.n_params

    def coefficients_at(theta: np.ndarray) -> HarmonicDiffusion:
        return HarmonicDiffusion(blocks.expand(theta), shape, spacing, neumann=True)

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

    operator = ParametricOperator(matvec, n=n, vjp=vjp, jvp=jvp, structure="spd",
                                  assemble=assemble, prepare=coefficients.prepare,
                                  vjp_jvp=vjp_jvp, jvp_transpose=jvp,
                                  nullspace=Nullspace(np.ones(n), rhs=rhs))
    theta_true = blocks.average(log_conductivity_field(shape))
    theta = theta_true + 0.25 * np.random.default_rng(seed).standard_normal(n_params)
    X, Y = cell_centres(shape)
    state = (np.cos(np.pi * X) * np.cos(np.pi * Y)).reshape(-1)
    state -= state.mean()
    b = coefficients_at(theta_true).stencil.apply(state)
    if objective is None:
        O = point_observations(shape, int(observe_every))
        objective = LeastSquaresMisfit(O, O @ state)
    else:
        theta_true = None
    problem = AdjointProblem(operator, b, objective, n_params=n_params)
    size = "x".join(str(m) for m in shape)
    name = f"neumann_diffusion_2d[{size}]" if blocks.is_identity else \
        f"neumann_diffusion_2d[{size},block={'x'.join(str(b) for b in blocks.block)}]"
    return ModelProblem(problem, theta, name, shape, derivative_matrices=derivative_matrices,
                        theta_true=theta_true)

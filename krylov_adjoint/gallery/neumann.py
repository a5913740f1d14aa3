"""Pure-Neumann diffusion −∇·(e^θ ∇u) = f, ∂u/∂n = 0: a singular SPD model problem."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..problem import AdjointProblem, LeastSquaresMisfit, Objective
from ..problem.nullspace import Nullspace
from ._blocks import BlockMap
from ._synthetic import cell_centres, log_conductivity_field, point_observations
from ._validate import check_grid
from .diffusion import harmonic_operator, model_name
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
    blocks = BlockMap(shape, block)
    n, n_params = int(np.prod(shape)), blocks.n_params
    operator, coefficients_at, derivative_matrices = harmonic_operator(
        shape, blocks, neumann=True, nullspace=Nullspace(np.ones(n), rhs=rhs))
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
    return ModelProblem(problem, theta, model_name("neumann_diffusion_2d", shape, blocks),
                        shape, derivative_matrices=derivative_matrices, theta_true=theta_true)

"""One implicit-Euler step of the 1-D heat equation with a parametric diffusivity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import ArrayLike

from ..problem import AdjointProblem, LeastSquaresMisfit, Objective, ParametricOperator
from ._prepared import Prepared
from ._reference import check_reference_size, matrices_from_entries
from ._stencil import FluxStencil
from ._validate import check_cell_values, check_choice, check_grid, check_positive
from .model import ModelProblem

__all__ = ["heat_1d"]


def heat_1d(n: int, *, dt: float = 1e-3, diffusivity: str = "scalar",
            initial: ArrayLike | None = None, objective: Objective | None = None,
            seed: int = 0) -> ModelProblem:
    """One backward-Euler step ``(I + dt·K(κ)) u¹ = u⁰`` of ``u_t = (κ u_x)_x`` on (0, 1).

    The unknowns are the values at the ``n`` interior nodes ``x_i = i h``, ``h = 1/(n+1)``,
    ``i = 1..n``, with ``u = 0`` at both ends. The ``n + 1`` cells are the intervals between
    consecutive nodes (boundary nodes included); cell ``j`` spans ``[j h, (j+1) h]`` and carries
    the diffusivity ``κ_j``, so that ``(K u)_i = (κ_{i-1}(u_i − u_{i-1}) + κ_i(u_i − u_{i+1}))/h²``
    (0-based ``i``). κ enters all three diagonals; the matrix is SPD.

    Parameters
    ----------
    n : int
        Number of interior nodes N (>= 2).
    dt : float
        Time step.
    diffusivity : {"scalar", "per_cell"}
        ``"scalar"``: θ = [log κ], P = 1. ``"per_cell"``: θ_j = log κ_j for the n + 1 cells,
        P = n + 1. Log-parametrised so that every θ gives an SPD matrix.
    initial : array of shape (n,), optional
        u⁰, the right-hand side (independent of θ). Default: a sine plus a Gaussian bump.
    objective : Objective, optional
        Default: ``LeastSquaresMisfit(None, u¹★)``, full-field data u¹★ computed (one
        tridiagonal direct solve) at ``theta_true``: κ★ = 1 (scalar) or
        ``log κ★ = 0.5 sin(2π x)`` at the cell midpoints (per cell).
    seed : int
        Seed of the random perturbation giving the reference ``theta``
        (``theta_true + 0.25·N(0, 1)``).

    Returns
    -------
    ModelProblem
        ``grid == (n,)``; ``rhs_derivative`` is None (b does not depend on θ). The operator
        has ``vjp_jvp`` and ``jvp_transpose`` (equal to ``jvp``) for Hessian-vector products.

    Examples
    --------
    >>> import numpy as np
    >>> model = heat_1d(4, dt=0.1, diffusivity="per_cell")
    >>> model.n_params
    5
    >>> A = model.problem.assemble(model.theta)
    >>> bool(np.allclose(A.toarray(), A.toarray().T))
    True
    """
    (n,) = check_grid((n,))
    dt = check_positive(dt, "dt")
    check_choice(diffusivity, "diffusivity", ("scalar", "per_cell"))
    h = 1.0 / (n + 1)
    n_params = 1 if diffusivity == "scalar" else n + 1
    cell_param = np.zeros(n + 1, dtype=np.intp) if diffusivity == "scalar" else np.arange(n + 1)

    def transmissibility(theta: np.ndarray) -> np.ndarray:
        return (dt / h**2) * np.exp(np.asarray(theta, dtype=np.float64)[cell_param])

    def stiffness(T: np.ndarray) -> FluxStencil:
        return FluxStencil.from_fluxes((n,), [T[1:-1]], [T[1:-1]], [T[:1]], [T[-1:]])

    matrix = Prepared(lambda th: stiffness(transmissibility(th)).plus_identity())

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return matrix(theta).apply(x)

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        jumps_x = np.diff(np.asarray(x), prepend=0.0, append=0.0)
        jumps_lam = np.diff(np.asarray(lam), prepend=0.0, append=0.0)
        per_cell = transmissibility(theta) * jumps_x * jumps_lam
        return np.bincount(cell_param, weights=per_cell, minlength=n_params)

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        dT = transmissibility(theta) * np.asarray(dtheta)[cell_param]
        return stiffness(dT).apply(x)

    def vjp_jvp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray:
        jumps_x = np.diff(np.asarray(x), prepend=0.0, append=0.0)
        jumps_lam = np.diff(np.asarray(lam), prepend=0.0, append=0.0)
        dT = transmissibility(theta) * np.asarray(dtheta)[cell_param]
        return np.bincount(cell_param, weights=dT * jumps_x * jumps_lam, minlength=n_params)

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        return matrix(theta).assemble()

    def derivative_matrices(theta: np.ndarray) -> list[sp.csr_matrix]:
        check_reference_size(n, "derivative_matrices")
        T = transmissibility(theta)
        left, right = np.arange(n - 1), np.arange(1, n)
        inner, p = T[1:-1], cell_param[1:-1]
        params = np.concatenate([p, p, p, p, cell_param[:1], cell_param[-1:]])
        rows = np.concatenate([left, right, left, right, [0], [n - 1]])
        cols = np.concatenate([left, right, right, left, [0], [n - 1]])
        values = np.concatenate([inner, inner, -inner, -inner, T[:1], T[-1:]])
        return matrices_from_entries(n, n_params, params, rows, cols, values)

    # ∂K/∂θ·dθ is a symmetric stencil: jvp is its own transpose.
    operator = ParametricOperator(matvec, n=n, vjp=vjp, jvp=jvp, structure="spd",
                                  assemble=assemble, prepare=matrix.prepare,
                                  vjp_jvp=vjp_jvp, jvp_transpose=jvp)
    nodes = np.arange(1, n + 1) * h
    if initial is None:
        u0 = np.sin(np.pi * nodes) + np.exp(-((nodes - 0.3) ** 2) / (2 * 0.05**2))
    else:
        u0 = check_cell_values(initial, "initial", n)
    midpoints = (np.arange(n + 1) + 0.5) * h
    theta_true = np.zeros(1) if diffusivity == "scalar" else 0.5 * np.sin(2 * np.pi * midpoints)
    theta = theta_true + 0.25 * np.random.default_rng(seed).standard_normal(n_params)
    if objective is None:
        data = spla.spsolve(assemble(theta_true).tocsc(), u0)
        objective = LeastSquaresMisfit(None, data)
    else:
        theta_true = None
    problem = AdjointProblem(operator, u0, objective, n_params=n_params)
    return ModelProblem(problem, theta, f"heat_1d[{n},{diffusivity}]", (n,),
                        derivative_matrices=derivative_matrices, theta_true=theta_true)

"""Plane-stress linear elasticity without supports: a singular SPD model problem."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..problem import AdjointProblem, LeastSquaresMisfit, Objective, ParametricOperator
from ..problem.nullspace import Nullspace
from ._reference import check_reference_size
from ._validate import check_grid
from .model import ModelProblem

__all__ = ["elasticity_2d"]

#: Poisson's ratio of the plane-stress material.
POISSON = 0.3


def element_stiffness(nu: float = POISSON) -> np.ndarray:
    """The 8 × 8 stiffness of a square bilinear (Q1) element for E = 1, unit thickness.

    Degrees of freedom ``(u_x, u_y)`` at the corners taken anticlockwise from the lower left;
    2 × 2 Gauss quadrature (exact for the square). In two dimensions it does not depend on
    the element's size.

    Examples
    --------
    >>> K = element_stiffness()
    >>> rigid = np.array([1.0, 0.0] * 4)  # a translation stores no energy
    >>> float(abs(K @ rigid).max()) < 1e-14
    True
    """
    D = np.array([[1.0, nu, 0.0], [nu, 1.0, 0.0], [0.0, 0.0, (1.0 - nu) / 2]]) / (1 - nu**2)
    corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    K = np.zeros((8, 8))
    g = 1.0 / np.sqrt(3.0)
    for xi, eta in ((-g, -g), (g, -g), (g, g), (-g, g)):
        # shape-function gradients on the reference square [-1, 1]²; the element is
        # [0, h]², so d/dx = (2/h) d/dξ and the Jacobian determinant is h²/4: h cancels
        grad_n = 0.25 * np.array([corners[:, 0] * (1 + corners[:, 1] * eta),
                              corners[:, 1] * (1 + corners[:, 0] * xi)]) * 2.0
        B = np.zeros((3, 8))
        B[0, 0::2] = grad_n[0]
        B[1, 1::2] = grad_n[1]
        B[2, 0::2] = grad_n[1]
        B[2, 1::2] = grad_n[0]
        K += B.T @ D @ B * 0.25
    return K


def rigid_body_modes(nx: int, ny: int) -> np.ndarray:
    """The three rigid motions (two translations, one rotation) at the nodes, (N, 3), on
    square elements of side 1/nx."""
    X, Y = np.meshgrid(np.arange(nx + 1) / nx, np.arange(ny + 1) / nx, indexing="ij")
    x, y = X.reshape(-1), Y.reshape(-1)
    modes = np.zeros((2 * x.size, 3))
    modes[0::2, 0] = 1.0
    modes[1::2, 1] = 1.0
    modes[0::2, 2] = -(y - 0.5)
    modes[1::2, 2] = x - 0.5
    return modes


def elasticity_2d(nx: int, ny: int | None = None, *, observe_every: int = 2,
                  objective: Objective | None = None, seed: int = 0) -> ModelProblem:
    """Plane-stress elasticity on ``[0, 1] × [0, ny/nx]`` with no supports, θ = log E per
    (square) element.

    A(θ) = Σₑ exp(θₑ) Kₑ (bilinear elements, ν = 0.3) is symmetric positive semidefinite; its
    nullspace, the three rigid motions, is declared on the operator and does not depend on
    θ. The load ``b = A(θ★) u★`` for a smooth displacement u★ is self-equilibrated (no net
    force or moment), so the system is consistent for every θ; x is the solution orthogonal
    to the rigid motions.

    Parameters
    ----------
    nx, ny : int
        Elements along x and y (``ny`` defaults to ``nx``); N = 2 (nx+1)(ny+1), P = nx·ny.
    observe_every : int
        The default objective observes both displacements at every ``observe_every``-th
        node along each axis.
    objective : Objective, optional
        Default: ``LeastSquaresMisfit(O, O u★)``.
    seed : int
        Seed of the perturbation giving ``theta = θ★ + 0.25·N(0, 1)``.

    Returns
    -------
    ModelProblem
        ``grid == (nx + 1, ny + 1, 2)``: ``x.reshape(grid)`` indexes displacements by node.

    Examples
    --------
    >>> import numpy as np
    >>> model = elasticity_2d(4)
    >>> model.n, model.n_params
    (50, 16)
    >>> A = model.problem.assemble(model.theta)
    >>> modes = model.problem.operator.nullspace.columns(model.theta, model.n)[0]
    >>> float(abs(A @ modes).max()) < 1e-12
    True
    """
    nx, ny = check_grid((nx, nx if ny is None else ny))
    if isinstance(observe_every, bool) or int(observe_every) != observe_every \
            or observe_every < 1:
        raise InputError("observe_every", f"expected an integer >= 1, got {observe_every!r}")
    K = element_stiffness()
    I, J = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    corner_nodes = [I * (ny + 1) + J, (I + 1) * (ny + 1) + J, (I + 1) * (ny + 1) + J + 1,
                    I * (ny + 1) + J + 1]
    nodes = np.stack([c.reshape(-1) for c in corner_nodes], axis=1)
    dofs = np.empty((nodes.shape[0], 8), dtype=np.int64)
    dofs[:, 0::2] = 2 * nodes
    dofs[:, 1::2] = 2 * nodes + 1
    n, n_params = 2 * (nx + 1) * (ny + 1), nx * ny
    rows = np.repeat(dofs, 8, axis=1).reshape(-1)
    cols = np.tile(dofs, (1, 8)).reshape(-1)

    def apply(scale: np.ndarray, x: np.ndarray) -> np.ndarray:
        local = scale[:, None] * (x[dofs] @ K)  # K is symmetric
        return np.bincount(dofs.reshape(-1), local.reshape(-1), minlength=n)

    def energies(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return np.einsum("ei,ij,ej->e", lam[dofs], K, x[dofs])

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return apply(np.exp(theta), x)

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return np.exp(theta) * energies(x, lam)

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return apply(np.exp(theta) * dtheta, x)

    def vjp_jvp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray:
        return np.exp(theta) * dtheta * energies(x, lam)

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        values = (np.exp(theta)[:, None] * K.reshape(1, -1)).reshape(-1)
        return sp.csr_matrix((values, (rows, cols)), shape=(n, n))

    def derivative_matrices(theta: np.ndarray) -> list[sp.csr_matrix]:
        check_reference_size(n, "derivative_matrices")
        out = []
        for e, weight in enumerate(np.exp(theta)):
            r, c = np.repeat(dofs[e], 8), np.tile(dofs[e], 8)
            out.append(sp.csr_matrix((weight * K.reshape(-1), (r, c)), shape=(n, n)))
        return out

    modes = rigid_body_modes(nx, ny)
    operator = ParametricOperator(matvec, n=n, vjp=vjp, jvp=jvp, structure="spd",
                                  assemble=assemble, vjp_jvp=vjp_jvp, jvp_transpose=jvp,
                                  nullspace=Nullspace(modes))
    cx, cy = (np.arange(nx) + 0.5) / nx, (np.arange(ny) + 0.5) / nx
    theta_true = (0.5 * np.sin(2 * np.pi * cx)[:, None] * np.cos(np.pi * cy)[None, :]
                  ).reshape(-1)
    theta = theta_true + 0.25 * np.random.default_rng(seed).standard_normal(n_params)
    X, Y = np.meshgrid(np.arange(nx + 1) / nx, np.arange(ny + 1) / nx, indexing="ij")
    state = np.stack([0.05 * np.sin(np.pi * X) * Y, 0.05 * X * np.cos(np.pi * Y)],
                     axis=-1).reshape(-1)
    Q = np.linalg.qr(modes)[0]
    state -= Q @ (Q.T @ state)
    b = apply(np.exp(theta_true), state)
    if objective is None:
        every = int(observe_every)
        picked = (np.arange(n).reshape(nx + 1, ny + 1, 2)[::every, ::every]).reshape(-1)
        O = sp.csr_matrix((np.ones(picked.size), (np.arange(picked.size), picked)),
                          shape=(picked.size, n))
        objective = LeastSquaresMisfit(O, O @ state)
    else:
        theta_true = None
    problem = AdjointProblem(operator, b, objective, n_params=n_params)
    return ModelProblem(problem, theta, f"elasticity_2d[{nx}x{ny}]", (nx + 1, ny + 1, 2),
                        derivative_matrices=derivative_matrices, theta_true=theta_true)

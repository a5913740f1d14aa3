"""Under mpirun: the distributed element operator against the serial ``element_operator``.

Plane-stress Q4 elasticity on a small cantilever: SIMP with a density filter given as a
PETSc Mat (θ split unlike the elements), and a linear law with one matrix per element.
Elements, dofs and θ are split unevenly; on three ranks rank 1 owns no element. Every rank
prints one ``KA-RESULT`` record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from _common import comm, emit, relative_error

import krylov_adjoint as ka
from krylov_adjoint import adapters
from krylov_adjoint.backends.petsc import (
    DistributedProblem,
    PetscAdjointSolver,
    petsc_element_operator,
    verify,
)
from krylov_adjoint.backends.petsc._import import petsc

NELX, NELY = 8, 4


def q4_stiffness(nu: float = 0.3) -> np.ndarray:
    k = np.array([1 / 2 - nu / 6, 1 / 8 + nu / 8, -1 / 4 - nu / 12, -1 / 8 + 3 * nu / 8,
                  -1 / 4 + nu / 12, -1 / 8 - nu / 8, nu / 6, 1 / 8 - 3 * nu / 8])
    order = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [1, 0, 7, 6, 5, 4, 3, 2],
                      [2, 7, 0, 5, 6, 3, 4, 1], [3, 6, 5, 0, 7, 2, 1, 4],
                      [4, 5, 6, 7, 0, 1, 2, 3], [5, 4, 3, 2, 1, 0, 7, 6],
                      [6, 3, 4, 1, 2, 7, 0, 5], [7, 2, 1, 4, 3, 6, 5, 0]])
    return k[order] / (1 - nu**2)


def mesh() -> np.ndarray:
    elx, ely = np.meshgrid(np.arange(NELX), np.arange(NELY), indexing="ij")
    n1 = ((NELY + 1) * elx + ely).ravel()
    n2 = ((NELY + 1) * (elx + 1) + ely).ravel()
    return np.stack([2 * n1 + 2, 2 * n1 + 3, 2 * n2 + 2, 2 * n2 + 3, 2 * n2, 2 * n2 + 1,
                     2 * n1, 2 * n1 + 1], axis=1)


def density_filter(radius: float = 1.5) -> sp.csr_matrix:
    centres = np.array([(x, y) for x in range(NELX) for y in range(NELY)], dtype=float)
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    H = np.maximum(radius - distance, 0.0)
    return sp.csr_matrix(H / H.sum(axis=1, keepdims=True))


def split(total: int, weights: list[float], rank: int) -> tuple[int, int]:
    edges = np.round(np.cumsum([0.0, *weights]) / sum(weights) * total).astype(int)
    return int(edges[rank]), int(edges[rank + 1])


SPLITS = {"elements": {1: [1.0], 2: [3.0, 1.0], 3: [2.0, 0.0, 1.0]},
          "dofs": {1: [1.0], 2: [1.0, 2.0], 3: [1.0, 1.0, 2.0]},
          "theta": {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 3.0, 1.0]}}


def case(world: Any, name: str) -> dict:
    PETSc = petsc()
    size, rank = world.Get_size(), world.Get_rank()
    conn = mesh()
    E, n = conn.shape[0], 2 * (NELX + 1) * (NELY + 1)
    fixed = np.arange(2 * (NELY + 1))
    f = np.zeros(n)
    f[2 * ((NELY + 1) * NELX + NELY // 2) + 1] = -1.0
    rng = np.random.default_rng(11)
    theta = 0.3 + 0.6 * rng.random(E)
    if name == "simp_filter":
        K, H, law = q4_stiffness(), density_filter(), "simp"
    else:
        K = q4_stiffness()[None] * (0.5 + rng.random(E))[:, None, None]
        H, law = None, "linear"
    serial_op = adapters.element_operator(K, conn, n, scaling=law, dirichlet_dofs=fixed,
                                          parameter_map=H, structure="spd")
    rhs = serial_op.dirichlet_rhs(f)
    serial = ka.AdjointProblem(serial_op, rhs, ka.LinearFunctional(rhs.value(None)),
                               n_params=E)
    reference = ka.AdjointSolver(serial, rtol=1e-13, preconditioner="ilu").gradient(theta)

    e0, e1 = split(E, SPLITS["elements"][size], rank)
    d0, d1 = split(n, SPLITS["dofs"][size], rank)
    t0, t1 = split(E, SPLITS["theta"][size], rank) if H is not None else (e0, e1)
    H_mat = None
    if H is not None:
        rows = H[e0:e1]
        H_mat = PETSc.Mat().createAIJ(((e1 - e0, E), (t1 - t0, E)),
                                      csr=(rows.indptr, rows.indices, rows.data), comm=world)
        H_mat.assemble()
    local_matrices = K if K.ndim == 2 else K[e0:e1]
    owned_fixed = fixed[(fixed >= d0) & (fixed < d1)]
    op = petsc_element_operator(local_matrices, conn[e0:e1], d1 - d0, n_dofs=n, scaling=law,
                                dirichlet_dofs=owned_fixed, parameter_map=H_mat,
                                structure="spd", comm=world)
    b = rhs.value(None)[d0:d1]
    problem = DistributedProblem(op, b, ka.LinearFunctional(b), theta_layout=op.theta_layout)
    with PetscAdjointSolver(problem, rtol=1e-13, preconditioner="gamg") as solver:
        result = solver.gradient(theta[t0:t1])
        gradient = op.theta_layout.gather(result.gradient, root=None)
        record = {"objective_error": abs(result.objective - reference.objective)
                  / abs(reference.objective),
                  "gradient_error": relative_error(gradient, reference.gradient),
                  "elements": e1 - e0, "ghost_dofs": int(op.dofs.ghosts.size)}
        dtheta = np.random.default_rng([5, rank]).standard_normal(t1 - t0)
        tangent = solver.directional_derivative(theta[t0:t1], dtheta)
        full = op.theta_layout.gather(dtheta, root=None)
        want = reference.gradient @ full
        record["tangent_error"] = abs(tangent.derivative - want) / abs(want)
        record["taylor_passed"] = bool(verify.taylor_test_solver(solver, theta[t0:t1],
                                                                 rng=3).passed)
    op.destroy()
    if H_mat is not None:
        H_mat.destroy()
    return record


def main() -> None:
    world = comm()
    emit({name: case(world, name) for name in ("simp_filter", "linear_per_element")})


if __name__ == "__main__":
    main()

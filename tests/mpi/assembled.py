"""Under mpirun: the distributed assembled operator against the serial ``from_assembly``.

A graph Laplacian on a grid, ``A(θ) = Σ_e θ_e a_e a_eᵀ + c I (+ a fixed upwind term)``, θ
one conductance per edge. Rows and θ are split unevenly (rank 1 owns no θ entry on three
ranks), so that each rank's values depend on other ranks' θ (declared ``theta_ghosts``) and
read x at other ranks' columns. Every rank prints one ``KA-RESULT`` record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from _common import comm, emit, relative_error

import krylov_adjoint as ka
from krylov_adjoint import adapters
from krylov_adjoint.backends.petsc import (
    CollectiveError,
    DistributedProblem,
    PetscAdjointSolver,
    from_petsc_assembly,
    petsc_affine_operator,
    verify,
)
from krylov_adjoint.backends.petsc._import import petsc

NX, NY = 9, 7


def grid_edges() -> np.ndarray:
    index = np.arange(NX * NY).reshape(NY, NX)
    horizontal = np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1)
    vertical = np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)
    return np.concatenate([horizontal, vertical])


EDGES = grid_edges()
N, P = NX * NY, EDGES.shape[0]


def split(total: int, weights: list[float], rank: int) -> tuple[int, int]:
    """An uneven split of ``total`` in proportion to ``weights`` (zero weights own nothing)."""
    edges = np.round(np.cumsum([0.0, *weights]) / sum(weights) * total).astype(int)
    return int(edges[rank]), int(edges[rank + 1])


def row_split(size: int) -> list[float]:
    return [1.0] if size == 1 else [2.0, 1.0] if size == 2 else [1.0, 3.0, 2.0]


def theta_split(size: int) -> list[float]:
    return [1.0] if size == 1 else [1.0, 2.0] if size == 2 else [3.0, 0.0, 2.0]


def global_matrix(theta: np.ndarray, upwind: float) -> sp.csr_matrix:
    """The full matrix (the serial reference's assembly), keeping every stored position."""
    i, j = EDGES[:, 0], EDGES[:, 1]
    rows = np.concatenate([i, j, i, j, np.arange(N), j])
    cols = np.concatenate([i, j, j, i, np.arange(N), i])
    values = np.concatenate([theta, theta, -theta, -theta, np.full(N, 0.5),
                             np.full(P, upwind)])
    return sp.csr_matrix(sp.coo_matrix((values, (rows, cols)), shape=(N, N)))


def edge_vjp(values_bar: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
    """θ̄_e = bar_ii + bar_jj − bar_ij − bar_ji over the edges, from the slots of each term."""
    out = np.zeros(slots["ii"].shape[0])
    for key, sign in (("ii", 1.0), ("jj", 1.0), ("ij", -1.0), ("ji", -1.0)):
        present = slots[key] >= 0
        out[present] += sign * values_bar[slots[key][present]]
    return out


def slot_table(indptr: np.ndarray, indices: np.ndarray, row0: int, edges: np.ndarray
               ) -> dict[str, np.ndarray]:
    """Where each edge's four entries sit in CSR values of rows [row0, row0 + rows) (-1 if
    the row is not there)."""
    n_rows = indptr.size - 1

    def find(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        out = np.full(r.size, -1)
        for k, (row, col) in enumerate(zip(r - row0, c, strict=True)):
            if 0 <= row < n_rows:
                segment = indices[indptr[row]:indptr[row + 1]]
                out[k] = indptr[row] + int(np.searchsorted(segment, col))
        return out

    i, j = edges[:, 0], edges[:, 1]
    return {"ii": find(i, i), "jj": find(j, j), "ij": find(i, j), "ji": find(j, i)}


def dirichlet_mask(rows: np.ndarray, cols: np.ndarray, dirichlet: np.ndarray) -> np.ndarray:
    return ~(np.isin(rows, dirichlet) | np.isin(cols, dirichlet))


def serial_gradient(theta: np.ndarray, b: np.ndarray, c: np.ndarray, upwind: float,
                    structure: str, dirichlet: np.ndarray) -> tuple[float, np.ndarray]:
    A0 = global_matrix(theta, upwind)
    table = slot_table(A0.indptr, A0.indices, 0, EDGES)
    rows = np.repeat(np.arange(N), np.diff(A0.indptr))
    keep = dirichlet_mask(rows, A0.indices, dirichlet)
    diagonal = np.isin(rows, dirichlet) & (rows == A0.indices)

    def assemble(th: np.ndarray) -> sp.csr_matrix:
        A = global_matrix(th, upwind)
        A.data = np.where(keep, A.data, 0.0) + diagonal
        return A

    def vjp(th: np.ndarray, values_bar: np.ndarray) -> np.ndarray:
        return edge_vjp(np.where(keep, values_bar, 0.0), table)

    op = adapters.from_assembly(assemble, vjp, theta, structure=structure)
    problem = ka.AdjointProblem(op, b, ka.LinearFunctional(c), n_params=P)
    result = ka.AdjointSolver(problem, rtol=1e-13, preconditioner="ilu").gradient(theta)
    return result.objective, result.gradient


class RankAssembly:
    """This rank's assembly: its rows of the global matrix, θ owned plus ghosts."""

    def __init__(self, world: Any, upwind: float, sabotage_rank: int | None = None) -> None:
        PETSc = petsc()
        size, rank = world.Get_size(), world.Get_rank()
        self.rows = split(N, row_split(size), rank)
        self.owned = split(P, theta_split(size), rank)
        r0, r1 = self.rows
        touching = np.flatnonzero(((EDGES >= r0) & (EDGES < r1)).any(axis=1))
        self.ghosts = np.setdiff1d(touching, np.arange(*self.owned))
        self.view = np.concatenate([np.arange(*self.owned), self.ghosts])  # θ view → edge
        self.upwind, self.PETSc, self.world = upwind, PETSc, world
        self.sabotage = sabotage_rank == rank
        self.calls = 0
        A = global_matrix(np.ones(P), upwind)[r0:r1]
        self.table = slot_table(A.indptr, A.indices, r0, EDGES[self.view])

    def local_rows(self, theta_view: np.ndarray) -> sp.csr_matrix:
        theta = np.zeros(P)
        theta[self.view] = theta_view
        return global_matrix(theta, self.upwind)[self.rows[0]:self.rows[1]]

    def assemble(self, theta_view: np.ndarray) -> Any:
        self.calls += 1
        A = self.local_rows(theta_view)
        if self.sabotage and theta_view.min() >= 2.0:  # a pattern change on one rank only
            A.data[-1] = 0.0
            A.eliminate_zeros()
        n_local = A.shape[0]
        mat = self.PETSc.Mat().createAIJ(size=((n_local, N), (n_local, N)),
                                         csr=(A.indptr, A.indices, A.data), comm=self.world)
        mat.assemble()
        return mat

    def vjp(self, theta_view: np.ndarray, values_bar: np.ndarray) -> np.ndarray:
        return edge_vjp(values_bar, self.table)

    def jvp(self, theta_view: np.ndarray, dtheta_view: np.ndarray) -> np.ndarray:
        return self.local_rows(dtheta_view).data - self.local_rows(np.zeros_like(dtheta_view)).data


def case(world: Any, structure: str, upwind: float, dirichlet: np.ndarray) -> dict:
    rng = np.random.default_rng(7)
    theta, b, c = 1.0 + rng.random(P), rng.standard_normal(N), rng.standard_normal(N)
    b[dirichlet] = 0.0
    J_ref, g_ref = serial_gradient(theta, b, c, upwind, structure, dirichlet)
    local = RankAssembly(world, upwind)
    r0, r1 = local.rows
    owned = (dirichlet >= r0) & (dirichlet < r1)
    op = from_petsc_assembly(local.assemble, local.vjp, theta[local.view[:local.owned[1]
                                                                       - local.owned[0]]],
                             structure=structure, assembly_jvp=local.jvp,
                             dirichlet_rows=dirichlet[owned], theta_ghosts=local.ghosts,
                             comm=world)
    problem = DistributedProblem(op, b[r0:r1], ka.LinearFunctional(c[r0:r1]),
                                 theta_layout=op.theta_layout)
    theta_local = theta[local.owned[0]:local.owned[1]]
    with PetscAdjointSolver(problem, rtol=1e-13, preconditioner="gamg") as solver:
        result = solver.gradient(theta_local)
        gradient = op.theta_layout.gather(result.gradient, root=None)
        record = {"objective_error": abs(result.objective - J_ref) / abs(J_ref),
                  "gradient_error": relative_error(gradient, g_ref),
                  "assemblies": op.assembly_count,
                  "ghost_columns": int(op.columns.ghosts.size)}
        rng_local = np.random.default_rng([3, world.Get_rank()])
        dtheta = rng_local.standard_normal(theta_local.size)
        tangent = solver.directional_derivative(theta_local, dtheta)
        full = op.theta_layout.gather(dtheta, root=None)
        record["tangent_error"] = abs(tangent.derivative - g_ref @ full) / abs(g_ref @ full)
        report = verify.taylor_test_solver(solver, theta_local, rng=5)
        record["taylor_passed"] = bool(report.passed)
    op.destroy()
    return record


def affine_case(world: Any) -> dict:
    """``A(θ) = ½I + Σ_e θ_e a_e a_eᵀ`` from PETSc matrices, against ``affine_operator``."""
    PETSc = petsc()
    size, rank = world.Get_size(), world.Get_rank()
    rng = np.random.default_rng(9)
    theta, b, c = 1.0 + rng.random(P), rng.standard_normal(N), rng.standard_normal(N)
    edge_matrices = [global_matrix(np.eye(P)[e], 0.0) - global_matrix(np.zeros(P), 0.0)
                     for e in range(P)]
    A0 = 0.5 * sp.identity(N, format="csr")
    serial_op = adapters.affine_operator(A0, edge_matrices, structure="spd")
    serial = ka.AdjointProblem(serial_op, b, ka.LinearFunctional(c), n_params=P)
    reference = ka.AdjointSolver(serial, rtol=1e-13, preconditioner="ilu").gradient(theta)
    r0, r1 = split(N, row_split(size), rank)
    t0, t1 = split(P, theta_split(size), rank)

    def distributed(matrix: sp.spmatrix) -> Any:
        rows = sp.csr_matrix(matrix)[r0:r1]
        rows.eliminate_zeros()
        mat = PETSc.Mat().createAIJ(((r1 - r0, N), (r1 - r0, N)),
                                    csr=(rows.indptr, rows.indices, rows.data), comm=world)
        mat.assemble()
        return mat

    terms = [distributed(m) for m in edge_matrices]
    op = petsc_affine_operator(distributed(A0), terms, theta[t0:t1], structure="spd",
                               comm=world)
    problem = DistributedProblem(op, b[r0:r1], ka.LinearFunctional(c[r0:r1]),
                                 theta_layout=op.theta_layout)
    with PetscAdjointSolver(problem, rtol=1e-13) as solver:
        result = solver.gradient(theta[t0:t1])
        gradient = op.theta_layout.gather(result.gradient, root=None)
        record = {"objective_error": abs(result.objective - reference.objective)
                  / abs(reference.objective),
                  "gradient_error": relative_error(gradient, reference.gradient)}
    op.destroy()
    for mat in terms:
        mat.destroy()
    return record


def main() -> None:
    world = comm()
    record: dict[str, Any] = {"affine": affine_case(world)}
    record["spd"] = case(world, "spd", 0.0, np.zeros(0, dtype=int))
    record["general"] = case(world, "general", 0.3, np.zeros(0, dtype=int))
    record["dirichlet"] = case(world, "spd", 0.0, np.array([0, 5, 30, N - 1]))
    failing = min(1, world.Get_size() - 1)
    local = RankAssembly(world, 0.0, sabotage_rank=failing)
    theta = 1.0 + np.arange(P) / P
    op = from_petsc_assembly(local.assemble, local.vjp,
                             theta[local.owned[0]:local.owned[1]], structure="spd",
                             theta_ghosts=local.ghosts, comm=world)
    r0, r1 = local.rows
    problem = DistributedProblem(op, np.ones(r1 - r0), ka.LinearFunctional(np.ones(r1 - r0)),
                                 theta_layout=op.theta_layout)
    with PetscAdjointSolver(problem, rtol=1e-10) as solver:
        solver.gradient(theta[local.owned[0]:local.owned[1]])
        try:
            solver.gradient(2.0 * theta[local.owned[0]:local.owned[1]])
            record["pattern_change"] = "no error"
        except CollectiveError as exc:
            record["pattern_change"] = {"type": type(exc).__name__, "rank": exc.rank,
                                        "message": str(exc)}
    op.destroy()
    emit(record)


if __name__ == "__main__":
    main()

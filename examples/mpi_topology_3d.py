"""3-D SIMP topology optimisation of a cantilever on PETSc/MPI, every rank building its own part.

    mpirun -n 2 python examples/mpi_topology_3d.py                 # 128×64×64 = 524,288 elements
    mpirun -n 2 python examples/mpi_topology_3d.py --nelx 160 --nely 80 --nelz 80   # 1,024,000
    mpirun -n 2 python examples/mpi_topology_3d.py --quick         # 24×12×12, a few seconds

Linear elasticity on a regular grid of trilinear hexahedra (3 dofs per node, E = 1,
ν = 0.3), one design variable per element, element stiffness ``s(ρ_e) K_e`` with the SIMP law
``s(ρ) = ε + (1 − ε) ρ³``, physical densities ``ρ = Hθ`` from a linear density filter
(radius 1.5 elements) held as a distributed PETSc matrix. The left face is clamped, a line
load pulls the right face's middle edge down. The compliance ``J = fᵀu`` is minimised under
a volume constraint by optimality-criteria updates, each costing one adjoint gradient: one
assembly (``MatSetValues`` of the rank's summed element values), one GAMG set-up with the six
rigid-body modes as near-nullspace, one CG solve and the VJP. Compliance is self-adjoint
(λ = u): with A declared SPD and ∂J/∂x equal to b, the PETSc backend starts the adjoint solve
from u, which passes its residual check without an iteration.

Each rank builds only its slab of elements (a block of x-layers), its rows of the filter, its
node coordinates and its part of the load: O(N / ranks) memory and time. The gradient is
checked first by a collective Taylor test. Rank 0 writes a PNG of the mid-plane density slice
(``--out``) and prints the JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import resource
import sys
from itertools import product
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint.backends.petsc import (
    DistributedProblem,
    PetscAdjointSolver,
    petsc_element_operator,
    verify,
)
from krylov_adjoint.backends.petsc._import import mpi, petsc

FIGURE = "app_mpi_topology_3d.png"


def hexahedron_stiffness(nu: float = 0.3, young: float = 1.0) -> np.ndarray:
    """The 24 × 24 stiffness of a unit-cube trilinear hexahedron (2×2×2 Gauss points).

    Nodes in the order ``(x, y, z)`` bits 000, 100, 110, 010, 001, 101, 111, 011; dofs
    ``[u₀, v₀, w₀, u₁, …]``.
    """
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                        [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float)
    lam = young * nu / ((1 + nu) * (1 - 2 * nu))
    mu = young / (2 * (1 + nu))
    D = np.full((3, 3), lam) + 2 * mu * np.eye(3)
    D = np.block([[D, np.zeros((3, 3))], [np.zeros((3, 3)), mu * np.eye(3)]])
    K = np.zeros((24, 24))
    g = 0.5 / np.sqrt(3.0)
    for point in product((0.5 - g, 0.5 + g), repeat=3):
        p = np.array(point)
        signs = 2 * corners - 1  # ∂N_a/∂x_i = s_ai Π_{j≠i} (1 − c_aj + s_aj p_j)
        factors = 1 - corners + signs * p
        grads = np.stack([signs[:, i] * np.prod(np.delete(factors, i, axis=1), axis=1)
                          for i in range(3)], axis=1)
        B = np.zeros((6, 24))
        for a in range(8):
            gx, gy, gz = grads[a]
            B[:, 3 * a:3 * a + 3] = [[gx, 0, 0], [0, gy, 0], [0, 0, gz],
                                     [gy, gx, 0], [0, gz, gy], [gz, 0, gx]]
        K += B.T @ D @ B / 8.0
    return 0.5 * (K + K.T)


class Slab:
    """This rank's part of the nelx × nely × nelz grid: a block of x-layers of elements.

    Nodes are numbered ``n = (ix (nely + 1) + iy)(nelz + 1) + iz`` and rank r owns the node
    layers ``ix`` in ``[x_r, x_{r+1})`` (the last rank also the last layer), hence a
    contiguous block of dofs ``3n + c``; it owns the elements of the same layers.
    """

    def __init__(self, nelx: int, nely: int, nelz: int, rank: int, size: int) -> None:
        self.nelx, self.nely, self.nelz = nelx, nely, nelz
        cuts = np.linspace(0, nelx, size + 1).round().astype(int)
        self.x0, self.x1 = int(cuts[rank]), int(cuts[rank + 1])
        self.node_x1 = self.x1 + (1 if rank == size - 1 else 0)
        self.plane = (nely + 1) * (nelz + 1)
        ex, ey, ez = np.meshgrid(np.arange(self.x0, self.x1), np.arange(nely),
                                 np.arange(nelz), indexing="ij")
        self.element_index = ((ex * nely + ey) * nelz + ez).ravel()
        base = ((ex * (nely + 1) + ey) * (nelz + 1) + ez).ravel()
        offsets = np.array([0, self.plane, self.plane + nelz + 1, nelz + 1,
                            1, self.plane + 1, self.plane + nelz + 2, nelz + 2])
        nodes = base[:, None] + offsets[None, :]
        self.connectivity = (3 * nodes[:, :, None] + np.arange(3)).reshape(-1, 24)

    @property
    def n_elements(self) -> int:
        return self.element_index.size

    @property
    def owned_nodes(self) -> np.ndarray:
        return np.arange(self.x0 * self.plane, self.node_x1 * self.plane)

    def coordinates(self) -> np.ndarray:
        """The owned nodes' coordinates, (n_owned, 3)."""
        nodes = self.owned_nodes
        ix, rest = np.divmod(nodes, self.plane)
        iy, iz = np.divmod(rest, self.nelz + 1)
        return np.stack([ix, iy, iz], axis=1).astype(float)

    def clamped_dofs(self) -> np.ndarray:
        """The dofs of the x = 0 face that this rank owns."""
        if self.x0 != 0:
            return np.zeros(0, dtype=np.int64)
        return (3 * np.arange(self.plane)[:, None] + np.arange(3)).ravel()

    def load(self) -> np.ndarray:
        """This rank's part of f: −1/(nely + 1) in z on the right face's middle line."""
        f = np.zeros(3 * self.owned_nodes.size)
        if self.node_x1 == self.nelx + 1:
            iy = np.arange(self.nely + 1)
            nodes = (self.nelx * (self.nely + 1) + iy) * (self.nelz + 1) + self.nelz // 2
            f[3 * (nodes - self.owned_nodes[0]) + 2] = -1.0 / (self.nely + 1)
        return f

    def filter_rows(self, radius: float) -> sp.csr_matrix:
        """This rank's rows of the normalised linear density filter (global columns)."""
        reach = int(np.ceil(radius)) - 1
        nx, ny, nz = self.nelx, self.nely, self.nelz
        ex, rest = np.divmod(self.element_index, ny * nz)
        ey, ez = np.divmod(rest, nz)
        rows, cols, vals = [], [], []
        local = np.arange(self.n_elements)
        for dx, dy, dz in product(range(-reach, reach + 1), repeat=3):
            weight = radius - np.sqrt(dx * dx + dy * dy + dz * dz)
            if weight <= 0:
                continue
            fx, fy, fz = ex + dx, ey + dy, ez + dz
            inside = (fx >= 0) & (fx < nx) & (fy >= 0) & (fy < ny) & (fz >= 0) & (fz < nz)
            rows.append(local[inside])
            cols.append(((fx * ny + fy) * nz + fz)[inside])
            vals.append(np.full(int(inside.sum()), weight))
        H = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(self.n_elements, nx * ny * nz))
        H.sort_indices()
        return sp.csr_matrix(sp.diags(1.0 / np.asarray(H.sum(axis=1)).ravel()) @ H)


def optimality_criteria(theta: Any, dc: np.ndarray, dv: np.ndarray, H: Any, volume: float,
                        move: float, comm: Any) -> np.ndarray:
    """One distributed OC update: bisection on ℓ with global sums of the filtered volume."""
    MPI = mpi()
    x = np.array(theta.getArray(readonly=True))
    ratio = np.maximum(-dc, 0.0) / dv
    total = comm.allreduce(x.size, op=MPI.SUM)
    low, high = 0.0, 1e9 * max(comm.allreduce(float(ratio.max(initial=0.0)), op=MPI.MAX),
                               1e-300)
    lower, upper = np.maximum(x - move, 0.0), np.minimum(x + move, 1.0)
    trial, filtered = theta.duplicate(), theta.duplicate()
    new = x
    while (high - low) > 1e-4 * (high + low):
        mid = 0.5 * (low + high)
        new = np.clip(x * np.sqrt(ratio / mid), lower, upper)
        trial.setArray(new)
        H.mult(trial, filtered)
        if filtered.sum() > volume * total:
            low = mid
        else:
            high = mid
    trial.destroy()
    filtered.destroy()
    return new


def main(argv: list[str]) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nelx", type=int, default=128)
    parser.add_argument("--nely", type=int, default=64)
    parser.add_argument("--nelz", type=int, default=64)
    parser.add_argument("--volume", type=float, default=0.12)
    parser.add_argument("--radius", type=float, default=1.5)
    parser.add_argument("--move", type=float, default=0.2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--quick", action="store_true", help="24×12×12, a few iterations")
    _common.add_out_argument(parser, f"the mid-plane density slice ({FIGURE})")
    args, _petsc_options = parser.parse_known_args(argv)
    if args.quick:
        args.nelx, args.nely, args.nelz, args.iterations = 24, 12, 12, 5
    PETSc = petsc()
    comm = mpi().COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    clock = _common.Stopwatch()

    # 1. Each rank's own part: elements, filter rows, coordinates, load (no global arrays).
    slab = Slab(args.nelx, args.nely, args.nelz, rank, size)
    E = args.nelx * args.nely * args.nelz
    rows = slab.filter_rows(args.radius)
    H = PETSc.Mat().createAIJ(((slab.n_elements, E), (slab.n_elements, E)),
                              csr=(rows.indptr, rows.indices, rows.data), comm=comm)
    H.assemble()
    op = petsc_element_operator(hexahedron_stiffness(), slab.connectivity,
                                3 * slab.owned_nodes.size, scaling="simp",
                                dirichlet_dofs=slab.clamped_dofs(), parameter_map=H,
                                structure="spd", block_size=3, comm=comm)
    coordinates = PETSc.Vec().createWithArray(slab.coordinates().ravel(), bsize=3, comm=comm)
    rigid = PETSc.NullSpace().createRigidBody(coordinates)
    op.mat.setNearNullSpace(rigid)
    f = slab.load()
    problem = DistributedProblem(op, f, ka.LinearFunctional(f), theta_layout=op.theta_layout)
    N = op.layout.size
    build = clock.lap("build")
    PETSc.Sys.Print(f"{args.nelx}×{args.nely}×{args.nelz} = {E:,} elements, N = {N:,} dofs, "
                    f"{size} rank(s); built locally in {build:.2f} s")

    theta = op.theta_layout.create_vec()
    theta.set(args.volume)
    options = {"pc_gamg_threshold": 0.01, "mg_levels_ksp_max_it": 2}

    # 2. The gradient on the real problem, at the starting design, by a Taylor test.
    with PetscAdjointSolver(problem, method="cg", rtol=1e-10, options=options,
                            options_prefix="taylor_") as checker:
        taylor = verify.taylor_test_solver(checker, theta.getArray(readonly=True), rng=0)
    PETSc.Sys.Print(taylor.summary())
    clock.lap("taylor")

    # 3. Optimality criteria, one adjoint gradient per design.
    ones, dv = theta.duplicate(), theta.duplicate()
    ones.set(1.0)
    H.multTranspose(ones, dv)
    dv_local = np.array(dv.getArray(readonly=True))
    history: list[float] = []
    primal_its: list[int] = []
    change = 1.0
    with PetscAdjointSolver(problem, method="cg", rtol=args.rtol, options=options,
                            reuse_preconditioner=False, check_gradient=False) as solver:
        for _ in range(args.iterations):
            result = solver.gradient(theta)
            history.append(result.objective)
            primal_its.append(result.primal.iterations)
            new = optimality_criteria(theta, np.array(result.gradient), dv_local, H,
                                      args.volume, args.move, comm)
            change = comm.allreduce(float(np.max(np.abs(new - theta.getArray()),
                                                 initial=0.0)), op=mpi().MAX)
            theta.setArray(new)
            PETSc.Sys.Print(f"it {len(history):3d}  J = {result.objective:.6e}  change = "
                            f"{change:.3f}  CG {result.primal.iterations}/"
                            f"{result.adjoint_solve.iterations}  {result.times['total']:.2f} s")
            result.destroy()
            if change < 0.01:
                break
        final = solver.gradient(theta)
        adjoint_minus_state = float(np.sqrt(comm.allreduce(
            float(np.sum((np.array(final.adjoint) - np.array(final.x)) ** 2)))
            / comm.allreduce(float(np.sum(np.array(final.x) ** 2)))))
        final_objective = final.objective
        final.destroy()
    optimisation = clock.lap("optimisation")
    rho = op.densities(theta)
    memory = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, root=0)
    slice_ = _mid_plane(slab, rho, comm)
    for obj in (ones, dv, coordinates, theta, H, rigid):
        obj.destroy()
    op.destroy()
    if rank != 0:
        return None
    out = _common.figure_path(args.out, FIGURE)
    _plot(slice_, history, out)
    iterations = len(history)
    return _common.print_summary({
        "example": "mpi_topology_3d", "ranks": size, "n": N, "p": E,
        "nelx": args.nelx, "nely": args.nely, "nelz": args.nelz,
        "taylor_rate": taylor.min_rate, "taylor_passed": bool(taylor.passed),
        "initial_objective": history[0], "final_objective": final_objective,
        "iterations": iterations, "last_change": change,
        "primal_iterations_range": [min(primal_its), max(primal_its)],
        "adjoint_minus_state": adjoint_minus_state,
        "seconds": clock.elapsed, "seconds_build": build,
        "seconds_per_iteration": optimisation / max(iterations, 1),
        "peak_memory_mb_per_rank": memory,
        "figure": _common.shown_path(out),
    })


def _mid_plane(slab: Slab, rho: np.ndarray, comm: Any) -> np.ndarray | None:
    """The densities of the layer ``ez = nelz // 2`` (an nelx × nely image) on rank 0."""
    ex, rest = np.divmod(slab.element_index, slab.nely * slab.nelz)
    ey, ez = np.divmod(rest, slab.nelz)
    keep = ez == slab.nelz // 2
    parts = comm.gather((ex[keep], ey[keep], rho[keep]), root=0)
    if parts is None:
        return None
    image = np.zeros((slab.nelx, slab.nely))
    for x, y, value in parts:
        image[x, y] = value
    return image


def _plot(image: np.ndarray, history: list[float], out: Any) -> None:
    plt = _common.pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    ax0.imshow(image.T, cmap="gray_r", vmin=0, vmax=1, origin="lower",
               interpolation="nearest", aspect="equal")
    ax0.set_title(f"ρ = Hθ on the mid-plane z = nelz/2, {image.shape[0]}×{image.shape[1]}")
    ax0.set_axis_off()
    ax1.semilogy(np.arange(1, len(history) + 1), history, "o-", ms=3)
    ax1.set_xlabel("optimality-criteria iteration")
    ax1.set_ylabel("compliance fᵀu")
    ax1.grid(True, which="both", alpha=0.3)
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main(sys.argv[1:])

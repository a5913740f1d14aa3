"""A distributed inverse conductivity problem: your own PETSc matrix, TAO BLMVM, 10⁶ parameters.

    mpirun -n 2 python examples/mpi_inverse_conductivity.py             # 1000² cells, P = 10⁶
    mpirun -n 2 python examples/mpi_inverse_conductivity.py --n 300
    mpirun -n 2 python examples/mpi_inverse_conductivity.py --quick     # 40², a few seconds

−∇·(e^θ∇u) = 1 on the unit square, u = 0 on the boundary, by cell-centred finite volumes:
the simulator assembles its own distributed PETSc AIJ matrix (5-point, harmonic-mean face
transmissibilities) and gives the VJP of its local values, nothing else; the library forms
the pattern cotangent λᵢxⱼ on each rank's rows, reading x at other ranks' columns through
the matrix's ghost scatter. θ (one log-conductivity per cell) is recovered from noisy values
of u at every fourth cell in each direction, with a Tikhonov term, by TAO's bound-constrained
limited-memory BFGS (BLMVM) with bounds −3 ≤ θ ≤ 3. Each rank builds its own rows, its own θ
and its own data: nothing global is ever formed (except the figure, gathered on rank 0).
Any PETSc option works on the command line (``-ka_tao_monitor``, ``-ka_tao_type lmvm``,
``-ka_primal_ksp_monitor``, ...).
"""

from __future__ import annotations

import argparse
import resource
import sys
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np

import krylov_adjoint as ka
from krylov_adjoint.backends.petsc import (
    DistributedProblem,
    PetscAdjointSolver,
    TaoObjective,
    from_petsc_assembly,
    verify,
)
from krylov_adjoint.backends.petsc._import import mpi, petsc

FIGURE = "app_mpi_inverse_conductivity.png"


class FiniteVolumeRows:
    """This rank's rows of the n × n finite-volume matrix: a block of grid rows (y-layers).

    Cell ``i = y n + x``. The values of row i depend on θ at i and its four neighbours,
    so the rank reads θ one grid row beyond its block on each side (``theta_ghosts``).
    """

    #: (dx, dy) of the neighbours in the sorted column order of a CSR row
    DIRECTIONS = ((0, -1), (-1, 0), (1, 0), (0, 1))

    def __init__(self, n: int, rank: int, size: int, comm: Any) -> None:
        PETSc = petsc()
        cuts = np.linspace(0, n, size + 1).round().astype(int)
        self.n, self.y0, self.y1 = n, int(cuts[rank]), int(cuts[rank + 1])
        self.start, self.stop = self.y0 * n, self.y1 * n
        cells = np.arange(self.start, self.stop)
        self.cells = cells
        y, x = np.divmod(cells, n)
        self.x, self.y = x, y
        neighbours, valid = [], []
        for dx, dy in self.DIRECTIONS:
            ok = (x + dx >= 0) & (x + dx < n) & (y + dy >= 0) & (y + dy < n)
            neighbours.append(np.where(ok, cells + dy * n + dx, -1))
            valid.append(ok)
        self.neighbours, self.valid = np.array(neighbours), np.array(valid)
        self.boundary_faces = 4 - self.valid.sum(axis=0)
        outside = self.neighbours[self.valid]
        self.theta_ghosts = np.unique(outside[(outside < self.start) | (outside >= self.stop)])
        # the θ view: owned cells, then the ghosts
        self.view_of = lambda g: np.where((g >= self.start) & (g < self.stop), g - self.start,
                                          cells.size + np.searchsorted(self.theta_ghosts, g))
        # the CSR pattern, columns sorted: S, W, diagonal, E, N
        columns = np.concatenate([self.neighbours[:2], cells[None], self.neighbours[2:]])
        present = np.concatenate([self.valid[:2], np.ones((1, cells.size), bool),
                                  self.valid[2:]])
        counts = present.sum(axis=0)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(PETSc.IntType)
        slot = np.cumsum(present, axis=0) - 1 + self.indptr[:-1]
        self.slots = np.where(present, slot, -1)  # (5, n_local): slot of each entry, or -1
        self.indices = columns.T[present.T].astype(PETSc.IntType)
        self.mat = PETSc.Mat().createAIJ(((cells.size, n * n), (cells.size, n * n)),
                                         csr=(self.indptr, self.indices,
                                              np.zeros(self.indices.size)), comm=comm)
        self.mat.assemble()

    def _faces(self, theta_view: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Face transmissibilities T (4, n_local) (0 where no neighbour), boundary T_b, and
        the view positions of the neighbours."""
        kappa = np.exp(-theta_view)  # 1/κ
        own = kappa[: self.cells.size]
        positions = self.view_of(np.where(self.valid, self.neighbours, self.start))
        T = np.where(self.valid, 2.0 / (own[None] + kappa[positions]), 0.0)
        return T, 2.0 * np.exp(theta_view[: self.cells.size]), positions

    def values(self, theta_view: np.ndarray) -> np.ndarray:
        T, boundary, _ = self._faces(theta_view)
        out = np.empty(self.indices.size)
        out[self.slots[2]] = T.sum(axis=0) + self.boundary_faces * boundary
        for k, row in ((0, 0), (1, 1), (2, 3), (3, 4)):
            ok = self.valid[k]
            out[self.slots[row][ok]] = -T[k][ok]
        return out

    def assemble(self, theta_view: np.ndarray) -> Any:
        """The simulator's assembly: this rank's rows into its PETSc matrix (collective)."""
        self.mat.setValuesCSR(self.indptr, self.indices, self.values(theta_view))
        self.mat.assemble()
        return self.mat

    def values_vjp(self, theta_view: np.ndarray, values_bar: np.ndarray) -> np.ndarray:
        """Σ_k values_bar[k] ∂values[k]/∂θ over the θ view (owned cells, then ghosts)."""
        T, boundary, positions = self._faces(theta_view)
        m = self.cells.size
        out = np.zeros(theta_view.size)
        kappa = np.exp(-theta_view)
        diagonal_bar = values_bar[self.slots[2]]
        out[:m] += diagonal_bar * self.boundary_faces * boundary
        for k, row in ((0, 0), (1, 1), (2, 3), (3, 4)):
            ok = self.valid[k]
            t_bar = np.where(ok, diagonal_bar - values_bar[np.maximum(self.slots[row], 0)],
                             0.0)
            # T = 2 / (1/κ_i + 1/κ_j): ∂T/∂θ_i = T² (1/κ_i) / 2
            half_t2 = 0.5 * T[k] ** 2 * t_bar
            out[:m] += half_t2 * kappa[:m]
            np.add.at(out, positions[k][ok], (half_t2 * kappa[positions[k]])[ok])
        return out


def main(argv: list[str]) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="cells per side (P = n²)")
    parser.add_argument("--alpha", type=float, default=1e-7, help="Tikhonov weight")
    parser.add_argument("--noise", type=float, default=1e-3, help="relative noise")
    parser.add_argument("--iterations", type=int, default=60, help="TAO iteration limit")
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--quick", action="store_true", help="a 40² grid")
    _common.add_out_argument(parser, f"the true and recovered fields ({FIGURE})")
    args, _petsc_options = parser.parse_known_args(argv)
    if args.quick:
        args.n, args.iterations = 40, 30
    comm = mpi().COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    PETSc = petsc()
    clock = _common.Stopwatch()

    # 1. Each rank's rows, θ and data (nothing global).
    rows = FiniteVolumeRows(args.n, rank, size, comm)
    h2 = 1.0 / args.n**2
    xs, ys = (rows.x + 0.5) / args.n, (rows.y + 0.5) / args.n
    theta_true = (1.5 * np.exp(-((xs - 0.35) ** 2 + (ys - 0.6) ** 2) / 0.02)
                  - np.exp(-((xs - 0.7) ** 2 + (ys - 0.3) ** 2) / 0.01))
    theta0 = np.zeros(rows.cells.size)
    observed = ((rows.x % 4) == 2) & ((rows.y % 4) == 2)
    op = from_petsc_assembly(rows.assemble, rows.values_vjp, theta0, structure="spd",
                             theta_ghosts=rows.theta_ghosts, comm=comm)
    b = np.full(rows.cells.size, h2)
    gauge = ka.LinearFunctional(np.zeros(rows.cells.size))
    truth = DistributedProblem(op, b, gauge, theta_layout=op.theta_layout)
    with PetscAdjointSolver(truth, rtol=1e-12, options_prefix="data_") as forward:
        u = np.array(forward.solve(theta_true).x)
    scale = float(comm.allreduce(float(np.abs(u).max(initial=0.0)), op=mpi().MAX))
    noise = np.random.default_rng([7, rank]).standard_normal(rows.cells.size)
    data = u + args.noise * scale * noise
    O = np.diag(observed.astype(float))[observed] if observed.size < 4096 else None
    misfit = (ka.LeastSquaresMisfit(O, data[observed]) if O is not None
              else _sampled_misfit(observed, data))
    objective = misfit + ka.Tikhonov(args.alpha)
    problem = DistributedProblem(op, b, objective, theta_layout=op.theta_layout)
    build = clock.lap("build")
    PETSc.Sys.Print(f"{args.n}² cells: N = P = {args.n**2:,}, {size} rank(s); rows, θ and data "
                    f"built locally in {build:.2f} s")

    # 2. The gradient by a collective Taylor test, then TAO.
    with PetscAdjointSolver(problem, rtol=1e-12, options_prefix="taylor_") as checker:
        taylor = verify.taylor_test_solver(checker, theta0, rng=0)
    PETSc.Sys.Print(taylor.summary())
    clock.lap("taylor")
    with PetscAdjointSolver(problem, rtol=args.rtol) as solver:
        initial = solver.objective(theta0)
        tao = TaoObjective(solver, method="blmvm", lower=-3.0, upper=3.0, gatol=0.0,
                           grtol=1e-6, maxiter=args.iterations)
        result = tao.solve(theta0)
        tao.destroy()
    optimisation = clock.lap("optimisation")
    theta = np.array(result.theta)
    error = np.sqrt(comm.allreduce(float(np.sum((theta - theta_true) ** 2)))
                    / comm.allreduce(float(np.sum(theta_true ** 2))))
    memory = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, root=0)
    fields = _gather_image(rows, theta_true, theta, comm=comm)
    op.destroy()
    rows.mat.destroy()
    if rank != 0:
        return None
    out = _common.figure_path(args.out, FIGURE)
    _plot(*fields, [r["objective"] for r in result.history], out)
    return _common.print_summary({
        "example": "mpi_inverse_conductivity", "ranks": size, "n": args.n**2,
        "p": args.n**2, "taylor_rate": taylor.min_rate, "taylor_passed": bool(taylor.passed),
        "initial_objective": initial, "final_objective": result.objective,
        "iterations": result.iterations, "reason": result.reason, "solves": result.n_solves,
        "relative_error": error, "seconds": clock.elapsed, "seconds_build": build,
        "seconds_optimisation": optimisation, "peak_memory_mb_per_rank": memory,
        "figure": _common.shown_path(out),
    })


def _sampled_misfit(observed: np.ndarray, data: np.ndarray) -> ka.Objective:
    """½ Σ_observed (x_i − d_i)² (this rank's part) without an observation matrix."""
    where, d = np.flatnonzero(observed), data[observed]

    def value(theta: Any, x: np.ndarray) -> float:
        r = x[where] - d
        return 0.5 * float(r @ r)

    def grad_x(theta: Any, x: np.ndarray) -> np.ndarray:
        g = np.zeros_like(x)
        g[where] = x[where] - d
        return g

    return ka.Objective(value, grad_x)


def _gather_image(rows: FiniteVolumeRows, *fields: np.ndarray, comm: Any) -> list[np.ndarray]:
    """Each field as an image on rank 0, subsampled to at most 500 × 500 cells."""
    step = max(1, rows.n // 500)
    keep = ((rows.x % step) == 0) & ((rows.y % step) == 0)
    out = []
    for field in fields:
        parts = comm.gather(
            (rows.x[keep] // step, rows.y[keep] // step, field[keep]), root=0)
        if parts is None:
            out.append(np.zeros(0))
            continue
        side = -(-rows.n // step)
        image = np.zeros((side, side))
        for x, y, value in parts:
            image[y, x] = value
        out.append(image)
    return out


def _plot(truth: np.ndarray, recovered: np.ndarray, history: list[float], out: Any) -> None:
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, image, title in ((axes[0], truth, "true θ"), (axes[1], recovered, "recovered θ")):
        shown = ax.imshow(image, origin="lower", cmap="RdBu_r", vmin=-1.5, vmax=1.5)
        ax.set_title(title)
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[:2], shrink=0.8)
    axes[2].semilogy(np.arange(1, len(history) + 1), history, "o-", ms=3)
    axes[2].set_xlabel("TAO BLMVM iteration")
    axes[2].set_ylabel("objective")
    axes[2].grid(True, which="both", alpha=0.3)
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main(sys.argv[1:])

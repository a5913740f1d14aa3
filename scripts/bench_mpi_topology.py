"""Benchmark: one design iteration of 3-D topology optimisation, library vs hand-written petsc4py.

    python scripts/bench_mpi_topology.py                  # 64×32×32 = 65,536 elements
    python scripts/bench_mpi_topology.py --quick          # 32×16×16, under 90 s
    python scripts/bench_mpi_topology.py --nelx 160 --nely 80 --nelz 80 --ranks 2   # 1,024,000
    python scripts/bench_mpi_topology.py --json out.json --repeats 5

One design iteration of the SIMP cantilever of ``examples/mpi_topology_3d.py`` (a new θ each
time): one assembly of the stiffness matrix from the ranks' elements, one GAMG set-up (rigid-
body near-nullspace), one CG solve, one VJP through the density filter. The compliance is
self-adjoint, λ = u: the hand-written loop uses u for λ, and the library, seeing a symmetric
A with ∂J/∂x = b, starts its adjoint solve from u, which stops after the residual check.

- the library: ``PetscAdjointSolver.gradient`` on ``petsc_element_operator`` (set-up per θ;
  without the certificate, whose correction solves the hand-written loop does not do);
- hand-written petsc4py with the same options: ``H·θ``, SIMP, ``MatSetValuesCOO`` of every
  element's entries, ``MatZeroRowsColumns``, ``KSPSetUp``, ``KSPSolve``, the element
  sensitivities from the ghosted u, ``Hᵀ``.

Both start CG from the previous design's u (the library's warm start).

The script launches itself under ``mpirun -n K`` for each K in ``--ranks``; the variants are
interleaved, ``--repeats`` timed rounds after a warm-up, medians. Reported (``--json``):
``overhead_vs_petsc4py`` (per rank count and the worst), ``efficiency_2`` (library, 1 → 2
ranks), ``seconds_per_iteration``, ``elements``, ``peak_memory_mb_per_rank``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"pc_gamg_threshold": 0.01, "mg_levels_ksp_max_it": 2,
           "mg_levels_ksp_type": "chebyshev", "mg_levels_pc_type": "jacobi",
           "pc_use_amat": False}
RTOL = 1e-5


def build(args: argparse.Namespace) -> dict[str, Any]:
    """The cantilever of the example, each rank building its own slab."""
    sys.path.insert(0, str(ROOT / "examples"))
    import numpy as np
    from mpi_topology_3d import Slab, hexahedron_stiffness

    import krylov_adjoint as ka
    from krylov_adjoint.backends.petsc import DistributedProblem, petsc_element_operator
    from krylov_adjoint.backends.petsc._import import mpi, petsc

    PETSc, comm = petsc(), mpi().COMM_WORLD
    slab = Slab(args.nelx, args.nely, args.nelz, comm.Get_rank(), comm.Get_size())
    E = args.nelx * args.nely * args.nelz
    rows = slab.filter_rows(1.5)
    H = PETSc.Mat().createAIJ(((slab.n_elements, E), (slab.n_elements, E)),
                              csr=(rows.indptr, rows.indices, rows.data), comm=comm)
    H.assemble()
    K = hexahedron_stiffness()
    op = petsc_element_operator(K, slab.connectivity, 3 * slab.owned_nodes.size,
                                scaling="simp", dirichlet_dofs=slab.clamped_dofs(),
                                parameter_map=H, structure="spd", block_size=3, comm=comm)
    coordinates = PETSc.Vec().createWithArray(slab.coordinates().ravel(), bsize=3, comm=comm)
    rigid = PETSc.NullSpace().createRigidBody(coordinates)
    op.mat.setNearNullSpace(rigid)
    f = slab.load()
    problem = DistributedProblem(op, f, ka.LinearFunctional(f), theta_layout=op.theta_layout)
    designs = [0.12 + 0.05 * np.sin(np.arange(slab.n_elements) * 0.37 + k) for k in range(64)]
    return {"slab": slab, "H": H, "K": K, "op": op, "problem": problem, "f": f,
            "rigid": rigid, "designs": designs, "E": E, "N": op.layout.size}


def library_runs(setup: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from krylov_adjoint.backends.petsc import PetscAdjointSolver

    options = {k: v for k, v in OPTIONS.items() if not k.startswith(("mg_levels_ksp_type",
                                                                     "mg_levels_pc_type",
                                                                     "pc_use"))}
    # the same work as the hand-written loop: no certificate (its two correction solves are
    # the library's own addition, off here; docs/method.md gives their cost)
    with PetscAdjointSolver(setup["problem"], method="cg", rtol=RTOL, options=options,
                            reuse_preconditioner=False, check_gradient=False,
                            error_estimate=False, options_prefix="lib_") as solver:
        k = 0
        while True:
            k += 1
            result = solver.gradient(setup["designs"][k % len(setup["designs"])])
            times = dict(result.times)
            yield {"times": {"total": times["total"], "primal_solve": result.primal.seconds},
                   "iterations": [result.primal.iterations, result.adjoint_solve.iterations]}
            result.destroy()


def handwritten_runs(setup: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The same design iteration with petsc4py and numpy only."""
    import numpy as np

    from krylov_adjoint.backends.petsc._import import mpi, petsc

    PETSc, comm = petsc(), mpi().COMM_WORLD
    slab, H, K = setup["slab"], setup["H"], setup["K"]
    layout = setup["op"].layout
    n_local, n = layout.local_size, layout.size
    conn = slab.connectivity
    A = PETSc.Mat().createAIJ(((n_local, n), (n_local, n)), bsize=3, comm=comm)
    rows = np.repeat(conn, 24, axis=1).ravel().astype(PETSc.IntType)
    cols = np.tile(conn, (1, 24)).ravel().astype(PETSc.IntType)
    A.setPreallocationCOO(rows, cols)
    del rows, cols
    A.setNearNullSpace(setup["rigid"])
    fixed = slab.clamped_dofs().astype(PETSc.IntType)
    ghosts = np.unique(conn[(conn < layout.start) | (conn >= layout.stop)])
    u_local = PETSc.Vec().createSeq(ghosts.size, comm=PETSc.COMM_SELF)
    scatter = PETSc.Scatter().create(layout.create_vec(),
                                     PETSc.IS().createGeneral(ghosts.astype(PETSc.IntType),
                                                              comm=PETSc.COMM_SELF),
                                     u_local, None)
    owned = (conn >= layout.start) & (conn < layout.stop)
    position = np.where(owned, conn - layout.start,
                        n_local + np.searchsorted(ghosts, np.where(owned, ghosts[0] if
                                                                   ghosts.size else 0, conn)))
    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOptionsPrefix("raw_")
    ksp.setType("cg")
    ksp.getPC().setType("gamg")
    ksp.setTolerances(rtol=RTOL)
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setInitialGuessNonzero(True)  # from the previous design's u, as the library does
    opts = PETSc.Options("raw_")
    for name, value in OPTIONS.items():
        opts.setValue(name, str(value).lower() if isinstance(value, bool) else str(value))
    ksp.setFromOptions()
    b = layout.create_vec()
    b.setArray(setup["f"])
    u, theta, rho, dc, gradient = (layout.create_vec(), H.createVecRight(), H.createVecLeft(),
                                   H.createVecLeft(), H.createVecRight())
    u.set(0.0)
    Kflat = K.ravel()
    k = 0
    while True:
        k += 1
        start = time.perf_counter()
        theta.setArray(setup["designs"][k % len(setup["designs"])])
        H.mult(theta, rho)
        r = rho.getArray(readonly=True)
        s, ds = 1e-9 + (1 - 1e-9) * r**3, 3 * (1 - 1e-9) * r**2
        A.setValuesCOO((s[:, None] * Kflat[None, :]).ravel(), PETSc.InsertMode.INSERT_VALUES)
        A.zeroRowsColumns(fixed, diag=1.0)
        ksp.setOperators(A)
        ksp.setUp()
        setup_done = time.perf_counter()
        ksp.solve(b, u)
        solved = time.perf_counter()
        scatter.scatter(u, u_local, PETSc.InsertMode.INSERT_VALUES, PETSc.ScatterMode.FORWARD)
        full = np.concatenate([u.getArray(readonly=True), u_local.getArray(readonly=True)])
        ue = full[position]
        ue[np.isin(conn, fixed)] = 0.0  # (fixed dofs are owned by rank 0 only)
        dc.setArray(-ds * np.einsum("ea,ab,eb->e", ue, K, ue))
        H.multTranspose(dc, gradient)
        J = b.dot(u)
        end = time.perf_counter()
        del J
        yield {"times": {"total": end - start, "primal_solve": solved - setup_done},
               "iterations": [ksp.getIterationNumber(), 0]}


def worker(args: argparse.Namespace) -> None:
    import resource

    from krylov_adjoint.backends.petsc._import import mpi

    comm = mpi().COMM_WORLD
    setup = build(args)
    variants = {"library": library_runs(setup), "petsc4py": handwritten_runs(setup)}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(args.repeats + 1):
        for name, runs in variants.items():
            rounds[name].append(next(runs))
    out: dict[str, Any] = {"ranks": comm.Get_size(), "elements": setup["E"], "N": setup["N"]}
    for name, records in rounds.items():
        kept = records[1:]  # the first round is a warm-up
        out[name] = {"total": statistics.median(r["times"]["total"] for r in kept),
                     "primal_solve": statistics.median(r["times"]["primal_solve"]
                                                       for r in kept),
                     "samples": [r["times"]["total"] for r in kept],
                     "iterations": kept[-1]["iterations"]}
    for runs in variants.values():
        runs.close()
    memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["peak_memory_mb_per_rank"] = comm.gather(memory, root=0)
    if comm.Get_rank() == 0:
        Path(args.out).write_text(json.dumps(out))


def launch(args: argparse.Namespace, ranks: int) -> dict[str, Any]:
    mpirun = Path(sys.executable).parent / "mpirun"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [str(mpirun) if mpirun.exists() else "mpirun", "-n", str(ranks),
                   sys.executable, __file__, "--worker", "--nelx", str(args.nelx), "--nely",
                   str(args.nely), "--nelz", str(args.nelz), "--repeats", str(args.repeats),
                   "--out", str(out)]
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        subprocess.run(["timeout", str(args.timeout), *command], check=True, env=env)
        return json.loads(out.read_text())


def summarise(runs: dict[int, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    per_ranks = {}
    for ranks, run in runs.items():
        per_ranks[str(ranks)] = {
            "seconds_per_iteration": run["library"]["total"],
            "petsc4py_seconds_per_iteration": run["petsc4py"]["total"],
            "overhead_vs_petsc4py": run["library"]["total"] / run["petsc4py"]["total"],
            "overhead_vs_petsc4py_min": min(run["library"]["samples"])
            / min(run["petsc4py"]["samples"]),
            "iterations": run["library"]["iterations"],
            "petsc4py_iterations": run["petsc4py"]["iterations"],
            "peak_memory_mb_per_rank": run["peak_memory_mb_per_rank"],
        }
    first = runs[min(runs)]
    summary: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "note": args.note},
        "config": {"nelx": args.nelx, "nely": args.nely, "nelz": args.nelz,
                   "repeats": args.repeats, "rtol": RTOL, "statistic": "median"},
        "elements": first["elements"], "N": first["N"], "per_ranks": per_ranks,
        "overhead_vs_petsc4py": max(r["overhead_vs_petsc4py"] for r in per_ranks.values()),
        "seconds_per_iteration": per_ranks[str(max(runs))]["seconds_per_iteration"],
        "peak_memory_mb_per_rank": per_ranks[str(max(runs))]["peak_memory_mb_per_rank"],
    }
    if "1" in per_ranks and "2" in per_ranks:
        summary["efficiency_2"] = (per_ranks["1"]["seconds_per_iteration"]
                                   / (2 * per_ranks["2"]["seconds_per_iteration"]))
    return summary


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32×16×16, under 90 s")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (medians)")
    parser.add_argument("--nelx", type=int, default=64)
    parser.add_argument("--nely", type=int, default=32)
    parser.add_argument("--nelz", type=int, default=32)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--note", default="")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.nelx, args.nely, args.nelz = 32, 16, 16
    runs = {int(k): launch(args, int(k)) for k in args.ranks.split(",")}
    summary = summarise(runs, args)
    print(f"{summary['elements']:,} elements, N = {summary['N']:,}")
    print(f"{'ranks':>5} {'library s/it':>12} {'petsc4py s/it':>13} {'overhead':>8} "
          f"{'(min)':>6} {'CG its':>7} {'memory MB/rank':>16}")
    for ranks, r in summary["per_ranks"].items():
        memory = "/".join(f"{m:.0f}" for m in r["peak_memory_mb_per_rank"])
        print(f"{ranks:>5} {r['seconds_per_iteration']:12.3f} "
              f"{r['petsc4py_seconds_per_iteration']:13.3f} {r['overhead_vs_petsc4py']:8.3f} "
              f"{r['overhead_vs_petsc4py_min']:6.3f} {r['iterations'][0]:>7} {memory:>16}")
    if "efficiency_2" in summary:
        print(f"efficiency_2 = {summary['efficiency_2']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Benchmark of the PETSc backend: phase times on 1 and 2 ranks, against hand-written petsc4py.

    python scripts/bench_mpi.py                    # 100³ diffusion (1M unknowns, 1M θ)
    python scripts/bench_mpi.py --quick            # small grids, under 90 s
    python scripts/bench_mpi.py --json out.json --repeats 5
    python scripts/bench_mpi.py --large            # 216³ = 10,077,696 unknowns and θ, 2 ranks

The script launches itself under ``mpirun -n K`` for every K in ``--ranks`` (workers) and
summarises. Each worker times, medians over ``--repeats`` gradients at the same θ (each with a
fresh preconditioner set-up and zero initial guesses):

- the library (``PetscAdjointSolver``, defaults but without the certificate, whose correction
  solves the hand-written code does not do; ``--large`` keeps it): set-up, primal, adjoint,
  gradient (VJP);
- the library with ``adjoint_pc="transpose"`` (the same work as KSPSolveTranspose);
- hand-written petsc4py doing the same thing with the same options and the same stencil code:
  shell matrix, AIJ preconditioner matrix, GAMG, ``KSPSolve`` then ``KSPSolveTranspose``, VJP.

Reported: ``efficiency_2`` (strong scaling of the gradient, 1 → 2 ranks),
``overhead_vs_petsc4py`` (library with the same adjoint work / hand-written, target ≤ 1.05;
medians, and ``_min`` with the fastest repeats, less sensitive to a shared machine),
``adjoint_over_primal_solve`` (library default and raw KSPSolveTranspose) on the symmetric 3-D
problem and on the nonsymmetric 2-D convection–diffusion problem.
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

ROOT = Path(__file__).resolve().parents[1]


# -- worker (under mpirun) -------------------------------------------------------------------
def library_runs(model: Any, **options: Any) -> Iterator[dict[str, Any]]:
    """One library gradient per ``next()``: fresh preconditioner set-up, zero initial guesses."""
    from krylov_adjoint.backends.petsc import PetscAdjointSolver

    with PetscAdjointSolver(model.problem, rtol=1e-8, **options) as solver:
        while True:
            solver.rebuild_preconditioner()
            solver.reset_warm_start()
            result = solver.gradient(model.theta)
            times = dict(result.times)
            times["setup"] = times.get("setup", 0.0) + times.get("adjoint_setup", 0.0) \
                + times.get("bind", 0.0)
            times["primal_solve"] = result.primal.seconds
            times["adjoint_solve"] = result.adjoint_solve.seconds
            record = {"times": times, "adjoint_pc": result.extra["adjoint_pc"],
                      "iterations": [result.primal.iterations,
                                     result.adjoint_solve.iterations]}
            result.destroy()
            yield record


def handwritten_runs(model: Any) -> Iterator[dict[str, Any]]:
    """J and dJ/dθ with petsc4py only (plus the same stencil code), no library machinery."""
    from krylov_adjoint.backends.petsc._import import mpi, petsc

    PETSc, MPI = petsc(), mpi()
    problem, grid = model.problem, model.grid
    comm = grid.comm
    symmetric = problem.structure.is_symmetric
    ops = problem.operator
    n_local, n = grid.layout.local_size, grid.layout.size
    sizes = ((n_local, n), (n_local, n))

    class Shell:
        def mult(self, mat: Any, x: Any, y: Any) -> None:
            y.setArray(ops._matvec(None, grid.exchange(x, "hx")))

        def multTranspose(self, mat: Any, x: Any, y: Any) -> None:  # noqa: N802
            y.setArray(ops._rmatvec(None, grid.exchange(x, "hx")))

    prefix = "raw_"
    options = PETSc.Options(prefix)
    # the library's defaults, spelled out: GAMG from the assembled matrix only, Chebyshev/Jacobi
    for name, value in (("mg_levels_ksp_type", "chebyshev"), ("mg_levels_pc_type", "jacobi"),
                        ("pc_use_amat", "false")):
        options.setValue(name, value)
    A = PETSc.Mat().createPython(sizes, Shell(), comm=comm)
    A.setUp()
    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOptionsPrefix(prefix)
    ksp.setType("cg" if problem.structure.name == "SPD" else "gmres")
    ksp.getPC().setType("gamg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=1e-8, atol=0.0, max_it=10000)
    ksp.setFromOptions()
    theta = grid.layout.create_vec() if model.blocks == 1 else \
        problem.theta_layout.create_vec()
    theta.setArray(model.theta)
    b, x, g, lam = (grid.layout.create_vec() for _ in range(4))
    P = None
    while True:
        t0 = time.perf_counter()
        owned = theta.getArray(readonly=True)[:n_local]
        theta_g = grid.exchange_array(owned, "htheta").copy()
        ops._prepare(theta_g)
        rows = ops._assemble(theta_g).tocsr()
        csr = (rows.indptr.astype(PETSc.IntType), rows.indices.astype(PETSc.IntType),
               rows.data)
        if P is None:
            P = PETSc.Mat().createAIJ(size=sizes, csr=csr, comm=comm)
        else:  # new values, same pattern, as the library does
            P.zeroEntries()
            P.setValuesCSR(*csr)
            P.assemble()
        if symmetric:  # what the library declares for a symmetric / SPD problem
            P.setOption(PETSc.Mat.Option.SYMMETRIC, True)
        if problem.structure.name == "SPD":
            P.setOption(PETSc.Mat.Option.SPD, True)
        ksp.setOperators(A, P)
        ksp.setUp()
        b.setArray(problem.rhs.value(owned if model.blocks == 1
                                     else theta.getArray(readonly=True)))
        x.set(0.0)
        t1 = time.perf_counter()
        ksp.solve(b, x)
        primal_its = ksp.getIterationNumber()
        t2 = time.perf_counter()
        xa = x.getArray(readonly=True)
        value = comm.allreduce(problem.objective.value(xa, owned), op=MPI.SUM)
        g.setArray(problem.objective.grad_x(xa, owned))
        lam.set(0.0)
        t3 = time.perf_counter()
        ksp.solveTranspose(g, lam)
        adjoint_its = ksp.getIterationNumber()
        t4 = time.perf_counter()
        grad = -ops._vjp(None, grid.exchange(x, "hx"), grid.exchange(lam, "hlam"))
        t5 = time.perf_counter()
        times = {"setup": t1 - t0, "primal": t2 - t1, "objective": t3 - t2,
                 "adjoint": t4 - t3, "gradient": t5 - t4, "total": t5 - t0,
                 "primal_solve": t2 - t1, "adjoint_solve": t4 - t3}
        del value, grad
        yield {"times": times, "iterations": [primal_its, adjoint_its],
               "adjoint_pc": "KSPSolveTranspose"}


def interleaved(variants: dict[str, Iterator[dict[str, Any]]], repeats: int
                ) -> dict[str, dict[str, Any]]:
    """Run the variants in turn, ``repeats + 1`` rounds (the first, a warm-up, is dropped
    from the medians and kept as ``first_times``: GAMG's first set-up builds its prolongators,
    later ones reuse them); medians per variant. Interleaving spreads the machine's noise
    evenly over them."""
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(repeats + 1):
        for name, runs in variants.items():
            rounds[name].append(next(runs))
    out = {}
    for name, records in rounds.items():
        kept = records[1:]
        out[name] = {"times": medians([r["times"] for r in kept]),
                     "first_times": records[0]["times"],
                     "samples": [r["times"]["total"] for r in kept],
                     "iterations": kept[-1]["iterations"],
                     "adjoint_pc": kept[-1]["adjoint_pc"]}
    for runs in variants.values():
        runs.close()
    return out


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    keys = samples[0].keys()
    return {k: statistics.median(s[k] for s in samples) for k in keys}


def worker(args: argparse.Namespace) -> None:
    import resource

    from krylov_adjoint.backends.petsc import gallery
    from krylov_adjoint.backends.petsc._import import mpi

    comm = mpi().COMM_WORLD
    out: dict[str, Any] = {"ranks": comm.Get_size()}
    cases = [("diffusion_3d", lambda: gallery.diffusion_3d(args.n))]
    if args.n2d:
        cases.append(("convection_2d", lambda: gallery.convection_diffusion_2d(
            args.n2d, peclet=20.0, parameters="diffusivity")))
    for name, build in cases:
        model = build()
        options: dict[str, Any] = {}
        if args.matptap_via:
            options["options"] = {"matptap_via": args.matptap_via}
        if not args.large:  # the same work as the hand-written loop: no certificate
            options["error_estimate"] = False
        variants = {"library": library_runs(model, **options)}
        if not args.large:  # three solvers alive at 10⁷ unknowns would not fit in memory
            variants.update(library_transpose=library_runs(model, adjoint_pc="transpose",
                                                           **options),
                            petsc4py=handwritten_runs(model))
        record = {"N": model.problem.n, "P": model.problem.n_params,
                  **interleaved(variants, args.repeats)}
        out[name] = record
        model.grid.destroy()
    memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["peak_memory_mb"] = comm.gather(memory, root=0)
    if comm.Get_rank() == 0:
        Path(args.out).write_text(json.dumps(out))


# -- orchestrator -----------------------------------------------------------------------------
def launch(args: argparse.Namespace, ranks: int) -> dict[str, Any]:
    mpirun = Path(sys.executable).parent / "mpirun"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [str(mpirun) if mpirun.exists() else "mpirun", "-n", str(ranks),
                   sys.executable, __file__, "--worker", "--n", str(args.n), "--n2d",
                   str(args.n2d), "--repeats", str(args.repeats), "--out", str(out),
                   *(["--large"] if args.large else []),
                   *(["--matptap-via", args.matptap_via] if args.matptap_via else [])]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(["timeout", str(args.timeout), *command], check=True, env=env)
        return json.loads(out.read_text())


def summarise(runs: dict[int, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "note": args.note},
        "config": {"n": args.n, "n2d": args.n2d, "repeats": args.repeats, "rtol": 1e-8,
                   "statistic": "median"},
        "runs": {str(k): v for k, v in runs.items()},
    }
    for case in ("diffusion_3d", "convection_2d"):
        if case not in runs[min(runs)]:
            continue
        per_rank = {}
        for ranks, run in runs.items():
            rec = run[case]
            if "petsc4py" not in rec:  # --large: the library alone
                lib, first = rec["library"]["times"], rec["library"]["first_times"]
                per_rank[str(ranks)] = {"setup_s": lib["setup"], "primal_s": lib["primal"],
                                        "adjoint_s": lib["adjoint"],
                                        "gradient_s": lib["gradient"], "total_s": lib["total"],
                                        "first_setup_s": first["setup"],
                                        "first_total_s": first["total"],
                                        "iterations": rec["library"]["iterations"]}
                continue
            lib, same, raw = (rec[k]["times"] for k in ("library", "library_transpose",
                                                        "petsc4py"))
            per_rank[str(ranks)] = {
                "setup_s": lib["setup"], "primal_s": lib["primal"],
                "adjoint_s": lib["adjoint"], "gradient_s": lib["gradient"],
                "total_s": lib["total"],
                "iterations": rec["library"]["iterations"],
                "adjoint_pc": rec["library"]["adjoint_pc"],
                "overhead_vs_petsc4py": same["total"] / raw["total"],
                "overhead_vs_petsc4py_min": min(rec["library_transpose"]["samples"])
                / min(rec["petsc4py"]["samples"]),
                "total_vs_petsc4py": lib["total"] / raw["total"],
                "adjoint_over_primal_solve": lib["adjoint_solve"] / lib["primal_solve"],
                "raw_adjoint_over_primal_solve": raw["adjoint_solve"] / raw["primal_solve"],
                "raw_iterations": rec["petsc4py"]["iterations"],
            }
        entry: dict[str, Any] = {"N": runs[min(runs)][case]["N"], "per_ranks": per_rank}
        if "1" in per_rank and "2" in per_rank:
            entry["efficiency_2"] = per_rank["1"]["total_s"] / (2 * per_rank["2"]["total_s"])
        summary[case] = entry
    return summary


def print_table(summary: dict[str, Any]) -> None:
    for case in ("diffusion_3d", "convection_2d"):
        if case not in summary:
            continue
        entry = summary[case]
        print(f"\n{case}: N = {entry['N']:,}"
              + (f", efficiency_2 = {entry['efficiency_2']:.2f}" if "efficiency_2" in entry
                 else ""))
        print(f"{'ranks':>5} {'setup':>7} {'primal':>7} {'adjoint':>7} {'grad':>6} "
              f"{'total':>7} {'its':>9} {'overhead':>8} {'(min)':>6} {'adj/pri':>7} "
              f"{'raw adj/pri':>11}")
        for ranks, r in entry["per_ranks"].items():
            its = f"{r['iterations'][0]}/{r['iterations'][1]}"
            line = (f"{ranks:>5} {r['setup_s']:7.2f} {r['primal_s']:7.2f} "
                    f"{r['adjoint_s']:7.2f} {r['gradient_s']:6.2f} {r['total_s']:7.2f} {its:>9}")
            if "first_total_s" in r:
                line += (f"   first gradient {r['first_total_s']:.2f} "
                         f"(set-up {r['first_setup_s']:.2f})")
            if "overhead_vs_petsc4py" in r:
                line += (f" {r['overhead_vs_petsc4py']:8.3f} {r['overhead_vs_petsc4py_min']:6.3f}"
                         f" {r['adjoint_over_primal_solve']:7.2f}"
                         f" {r['raw_adjoint_over_primal_solve']:11.2f}")
            print(line)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grids, under 90 s")
    parser.add_argument("--large", action="store_true",
                        help="the 10⁷ × 10⁷ problem: 216³ on 2 ranks, one repeat (about 6 GB "
                             "per rank; not for CI)")
    parser.add_argument("--matptap-via", choices=["scalable", "allatonce"],
                        help="GAMG's Galerkin products (PETSc's -matptap_via; allatonce: "
                             "less memory, slower set-ups)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (medians)")
    parser.add_argument("--n", type=int, default=100, help="3-D cells per axis")
    parser.add_argument("--n2d", type=int, default=1000, help="2-D cells per axis (0: skip)")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--note", default="")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.n, args.n2d, args.repeats = 40, 250, 2
    elif args.large:
        args.n, args.n2d, args.repeats, args.ranks = 216, 0, 1, "2"
    runs = {int(k): launch(args, int(k)) for k in args.ranks.split(",")}
    summary = summarise(runs, args)
    print_table(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])

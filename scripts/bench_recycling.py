"""Krylov recycling along a path of θ: iterations and time with ``recycle=0`` and ``recycle=k``.

A path like an optimiser's: ``θ_j = θ₀ + j·h·d + h·ξ_j`` (a fixed direction d and a small
random part ξ_j, both unit normal, h = 0.02), one gradient (primal + adjoint solve) per
point, warm starts on, the preconditioner set up once and kept (the engine's reuse rule).
For each case and each k: the total primal and adjoint iterations, the wall and CPU time of
all gradients, the median time per gradient, and the largest relative difference of the
gradients from those with ``recycle=0`` (all at the solver's default rtol 1e-8).

Serial cases (GCRO-DR for GMRES, deflated CG for CG, :mod:`krylov_adjoint.krylov.recycling`):
2-D diffusion with CG and AMG or Jacobi, 2-D convection–diffusion with GMRES(30) and AMG or
ILU. PETSc cases (the projected start of :mod:`krylov_adjoint.backends.petsc.recycling`), on
1 and 2 ranks under mpirun: diffusion with CG and GAMG, convection–diffusion with GMRES and
GAMG or block Jacobi.

OpenBLAS is asked for one thread (``OPENBLAS_NUM_THREADS=1`` unless set). Usage::

    python scripts/bench_recycling.py --quick               # 48², 5 gradients, < 90 s
    python scripts/bench_recycling.py --json recycling.json # 128², 10 gradients
    python scripts/bench_recycling.py --no-petsc            # serial only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the thread setting)

SERIAL_CASES = (("diffusion", "cg", "amg"), ("diffusion", "cg", "jacobi"),
                ("convection", "gmres", "amg"), ("convection", "gmres", "ilu"))
PETSC_CASES = (("diffusion", "cg", "gamg"), ("convection", "gmres", "gamg"),
               ("convection", "gmres", "bjacobi"))
STEP = 0.02


def path(theta0: np.ndarray, steps: int) -> list[np.ndarray]:
    """The points of the path (module docstring), in the serial ordering."""
    rng = np.random.default_rng(11)
    direction = rng.standard_normal(theta0.size)
    return [theta0 + STEP * (j * direction + rng.standard_normal(theta0.size))
            for j in range(steps)]


def summary(results: list[tuple[int, int, float]], wall: float, cpu: float,
            gradients: list[np.ndarray], reference: list[np.ndarray] | None) -> dict[str, Any]:
    difference = 0.0 if reference is None else max(
        float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(gradients, reference,
                                                                         strict=True))
    return {"primal_iterations": sum(r[0] for r in results),
            "adjoint_iterations": sum(r[1] for r in results),
            "wall_s": wall, "cpu_s": cpu,
            "median_gradient_s": statistics.median(r[2] for r in results),
            "max_gradient_rel_diff": difference}


def serial_case(problem: str, method: str, pc: str, n: int, steps: int, ks: list[int]
                ) -> dict[str, Any]:
    import krylov_adjoint as ka
    from krylov_adjoint import gallery

    model = (gallery.diffusion_2d(n) if problem == "diffusion"
             else gallery.convection_diffusion_2d(n))
    points = path(np.asarray(model.theta), steps)
    out: dict[str, Any] = {}
    reference = None
    for k in ks:
        solver = ka.AdjointSolver(model.problem, method=method, preconditioner=pc, recycle=k,
                                  maxiter=20000)
        results, gradients = [], []
        wall, cpu = time.perf_counter(), time.process_time()
        for theta in points:
            tick = time.perf_counter()
            g = solver.gradient(theta)
            results.append((g.primal.iterations, g.adjoint_solve.iterations,
                            time.perf_counter() - tick))
            gradients.append(g.gradient)
        out[f"k={k}"] = summary(results, time.perf_counter() - wall,
                                time.process_time() - cpu, gradients, reference)
        reference = reference or gradients
    return out


def petsc_worker(n: int, steps: int, ks: list[int], quick: bool) -> None:
    """Under mpirun: the PETSc cases; rank 0 prints one JSON line."""
    from mpi4py import MPI

    from krylov_adjoint.backends.petsc import PetscAdjointSolver
    from krylov_adjoint.backends.petsc import gallery as pgallery

    out: dict[str, Any] = {}
    for problem, method, pc in PETSC_CASES:
        if quick and pc == "bjacobi":
            continue
        case: dict[str, Any] = {}
        reference = None
        for k in ks:
            model = (pgallery.diffusion_2d(n) if problem == "diffusion"
                     else pgallery.convection_diffusion_2d(n))
            points = path(np.asarray(model.serial.theta), steps)
            solver = PetscAdjointSolver(model.problem, method=method, preconditioner=pc,
                                        recycle=k, maxiter=20000,
                                        options_prefix=f"{problem}_{pc}_{k}_")
            results, gradients = [], []
            MPI.COMM_WORLD.Barrier()
            wall, cpu = time.perf_counter(), time.process_time()
            for theta in points:
                tick = time.perf_counter()
                g = solver.gradient(model.local_theta(theta))
                results.append((g.primal.iterations, g.adjoint_solve.iterations,
                                time.perf_counter() - tick))
                gradients.append(model.gather_theta(g.gradient, root=None))
                g.destroy()
            case[f"k={k}"] = summary(results, time.perf_counter() - wall,
                                     time.process_time() - cpu, gradients, reference)
            reference = reference or gradients
            solver.destroy()
        out[f"{problem}-{method}-{pc}"] = case
    if MPI.COMM_WORLD.rank == 0:
        print("BENCH " + json.dumps(out), flush=True)


def petsc_cases(ranks: int, n: int, steps: int, ks: list[int], quick: bool
                ) -> dict[str, Any]:
    mpiexec = shutil.which("mpiexec") or shutil.which("mpirun")
    if mpiexec is None:
        return {"skipped": "no mpiexec"}
    command = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--petsc-worker",
               "--n", str(n), "--steps", str(steps), "--k", *map(str, ks),
               *(["--quick"] if quick else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode or not lines:
        return {"failed": (done.stdout + done.stderr)[-2000:]}
    return json.loads(lines[0][len("BENCH "):])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="48², 5 gradients, no block Jacobi on PETSc (< 90 s)")
    parser.add_argument("--json", metavar="PATH", help="write the results there")
    parser.add_argument("--no-petsc", action="store_true", help="serial cases only")
    parser.add_argument("--n", type=int, help="cells per side (default 128, quick 48)")
    parser.add_argument("--steps", type=int, help="gradients (default 10, quick 5)")
    parser.add_argument("--k", type=int, nargs="+", help="recycled dimensions (0 first)")
    parser.add_argument("--petsc-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.n or (48 if args.quick else 128)
    steps = args.steps or (5 if args.quick else 10)
    ks = args.k or [0, 10]
    if args.petsc_worker:
        petsc_worker(n, steps, ks, args.quick)
        return
    record: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                    "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
        "n": n, "steps": steps, "k": ks, "serial": {}, "petsc": {}}
    for problem, method, pc in SERIAL_CASES:
        record["serial"][f"{problem}-{method}-{pc}"] = serial_case(problem, method, pc, n,
                                                                   steps, ks)
    if not args.no_petsc:
        for ranks in (1, 2):
            record["petsc"][f"{ranks}ranks"] = petsc_cases(ranks, n, steps, ks, args.quick)
    for backend in ("serial", "petsc"):
        groups = (record[backend].items() if backend == "serial" else
                  [(f"{r} {name}", case) for r, cases in record[backend].items()
                   for name, case in cases.items() if isinstance(case, dict)])
        for name, case in groups:
            for k, s in case.items():
                print(f"{backend:6} {name:34} {k:5} its {s['primal_iterations']:6d} + "
                      f"{s['adjoint_iterations']:6d}  wall {s['wall_s']:7.2f} s  cpu "
                      f"{s['cpu_s']:7.2f} s  max grad diff {s['max_gradient_rel_diff']:.1e}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()

"""Many sources: one gradient over S sources against S separate single-source gradients.

The EIT-like problem of :func:`krylov_adjoint.gallery.eit_2d` (N = n² cells, P = N
log-conductivities, S adjacent current patterns, every boundary potential measured), at
θ = θ★/2, CG with smoothed-aggregation AMG, rtol 1e-8. For each S:

- ``sources``: ``solver.sources_gradient(θ, sources)`` on a new solver (its one AMG set-up
  included), the default way (one source after another on one set-up, no warm start at a
  first θ); ``batched_cg`` and ``block_cg`` the same with those ``solves=`` (blocks of 16
  sources, the operator applied to (N, k) blocks);
- ``separate``: S single-source gradients, each on a new solver with its own set-up
  (``--sample`` of them timed, the mean taken for every source; the first S = 16 of the
  full run times all 16);
- ``two_solves``: the primal plus adjoint solve time of those single-source gradients
  (set-up excluded), the median over the sample.

``sources_over_separate`` = sources / (S × separate mean) (target ≤ 0.6 at S = 16);
``per_source_over_two_solves`` = sources / S / two_solves (target ≤ 1.0). Times are this
process's CPU time by default (``--clock cpu``; single-threaded BLAS): on a machine shared
with other jobs, wall times of identical runs differ by half, CPU times by a few per cent;
``--clock wall`` measures wall time. ``--smoother
chebyshev`` replaces AMG's symmetric Gauss–Seidel (the default) by Chebyshev smoothing of
degree 2, which AMG applies to a whole block at once, everywhere. Times are medians
of ``--repeats`` rounds, all ratios from this one run. OpenBLAS is asked for one thread
(``OPENBLAS_NUM_THREADS=1`` unless set, before numpy loads); the value is recorded. Usage::

    python scripts/bench_sources.py --quick                # 128², S = 16, under 90 s
    python scripts/bench_sources.py --json sources.json    # 512², S = 16 and 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the thread setting)

import krylov_adjoint as ka  # noqa: E402
from krylov_adjoint.gallery import eit_2d  # noqa: E402

TARGETS = {"sources_over_separate": 0.6, "per_source_over_two_solves": 1.0}
RTOL = 1e-8


SMOOTHERS = {"gauss_seidel": {},
             "chebyshev": {"presmoother": ("chebyshev", {"degree": 2}),
                           "postsmoother": ("chebyshev", {"degree": 2})}}


def new_solver(problem: Any, smoother: str) -> ka.AdjointSolver:
    return ka.AdjointSolver(problem, method="cg", preconditioner="amg", rtol=RTOL,
                            preconditioner_options=SMOOTHERS[smoother])


def clock(fn: Any, kind: str) -> tuple[float, Any]:
    """Seconds of ``fn()`` on the chosen clock ("cpu": this process's CPU time, "wall")."""
    now = time.process_time if kind == "cpu" else time.perf_counter
    tick = now()
    result = fn()
    return now() - tick, result


def time_sources(eit: Any, theta: np.ndarray, solves: str, smoother: str, kind: str
                 ) -> tuple[float, Any]:
    solver = new_solver(eit.model.problem, smoother)
    return clock(lambda: solver.sources_gradient(theta, eit.sources, solves=solves), kind)


def time_separate(eit: Any, theta: np.ndarray, sample: list[int], smoother: str, kind: str
                  ) -> tuple[float, float, int]:
    """Mean seconds of a single-source gradient with its own set-up, median primal + adjoint
    seconds, total iterations (primal + adjoint) over the sample. On the CPU clock the
    solves' share of a gradient is its wall-time share (the library times its phases on the
    wall clock)."""
    totals, solves, iterations = [], [], 0
    for s in sample:
        problem = ka.AdjointProblem(eit.operator, *eit.sources.single(s),
                                    n_params=eit.model.n_params)
        solver = new_solver(problem, smoother)
        seconds, result = clock(lambda solver=solver: solver.gradient(theta), kind)
        totals.append(seconds)
        share = (result.times["primal"] + result.times["adjoint"]) / result.times["total"]
        solves.append(share * seconds)
        iterations += result.primal.iterations + result.adjoint_solve.iterations
    return statistics.fmean(totals), statistics.median(solves), iterations


def run(n: int, s_values: list[int], repeats: int, sample: int, smoother: str = "gauss_seidel",
        kind: str = "cpu", log: Any = print) -> dict[str, Any]:
    rows = []
    for S in s_values:
        tick = time.perf_counter()
        eit = eit_2d(n, n_sources=S)
        log(f"n = {n}² ({n * n} unknowns), S = {S}: model and data in "
            f"{time.perf_counter() - tick:.1f} s")
        theta = 0.5 * eit.theta_true
        picked = list(np.linspace(0, S, min(S, sample), endpoint=False).astype(int))
        rounds: dict[str, list[float]] = {"sources": [], "batched_cg": [], "block_cg": [],
                                          "separate": [], "two_solves": []}
        results: dict[str, Any] = {}
        warm_up = ka.Sources(list(eit.sources.rhs[:2]), list(eit.sources.objectives[:2]))
        new_solver(eit.model.problem, smoother).sources_gradient(theta, warm_up)  # untimed
        for _ in range(repeats):
            for way in ("sources", "batched_cg", "block_cg"):
                seconds, results[way] = time_sources(eit, theta,
                                                     "auto" if way == "sources" else way,
                                                     smoother, kind)
                rounds[way].append(seconds)
            mean, two, separate_iterations = time_separate(eit, theta, picked, smoother, kind)
            rounds["separate"].append(mean * S)
            rounds["two_solves"].append(two)
        med = {k: statistics.median(v) for k, v in rounds.items()}
        default = results["sources"]
        row = {
            "S": S, "n": n * n, "solves": default.solves,
            "sources_s": med["sources"], "batched_cg_s": med["batched_cg"],
            "block_cg_s": med["block_cg"],
            "separate_s": med["separate"], "two_solves_s": med["two_solves"],
            "sources_over_separate": med["sources"] / med["separate"],
            "per_source_over_two_solves": med["sources"] / S / med["two_solves"],
            "batched_cg_per_source_over_two_solves":
                med["batched_cg"] / S / med["two_solves"],
            "block_cg_per_source_over_two_solves": med["block_cg"] / S / med["two_solves"],
            "setup_share": default.times["setup"] / default.times["total"],
            "iterations": {way: [r.primal_iterations, r.adjoint_iterations]
                           for way, r in results.items()},
            "separate_iterations_per_source": separate_iterations / len(picked),
            "gradient_agreement": max(
                float(np.linalg.norm(r.gradient - default.gradient)
                      / np.linalg.norm(default.gradient)) for r in results.values()),
            "separate_sample": len(picked),
        }
        log(f"  sources {row['sources_s']:.2f} s ({row['solves']}), batched CG "
            f"{row['batched_cg_s']:.2f} s, block CG {row['block_cg_s']:.2f} s, separate "
            f"{row['separate_s']:.2f} s, two solves {row['two_solves_s']:.3f} s; iterations "
            f"{row['iterations']}")
        rows.append(row)
    at16 = next((r for r in rows if r["S"] == 16), rows[0])
    record: dict[str, Any] = {
        "n": n * n, "grid": [n, n], "s_values": s_values, "rows": rows,
        "sources_over_separate": at16["sources_over_separate"],
        "per_source_over_two_solves": max(r["per_source_over_two_solves"] for r in rows),
        "targets": {name: {"target": value} for name, value in TARGETS.items()},
        "clock": kind,
        "settings": {"rtol": RTOL, "method": "cg", "preconditioner": "amg",
                     "smoother": smoother,
                     "repeats": repeats, "separate_sample": sample, "block_size": 16},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "python": platform.python_version(), "cores": os.cpu_count()},
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average": os.getloadavg()[0],
    }
    for name, target in record["targets"].items():
        target["value"] = record[name]
        target["met"] = record[name] <= target["target"]
    return record


def table(record: dict[str, Any]) -> str:
    lines = ["| S | sources s | separate s | two solves s | sources / separate | per source / "
             "two solves | batched CG: per source / two solves | block CG: per source / two "
             "solves | iterations (primal, adjoint): one by one, batched, block |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        its = r["iterations"]
        lines.append(
            f"| {r['S']} | {r['sources_s']:.2f} | {r['separate_s']:.2f} | "
            f"{r['two_solves_s']:.3f} | {r['sources_over_separate']:.3f} | "
            f"{r['per_source_over_two_solves']:.3f} | "
            f"{r['batched_cg_per_source_over_two_solves']:.3f} | "
            f"{r['block_cg_per_source_over_two_solves']:.3f} | "
            f"{its['sources']}, {its['batched_cg']}, {its['block_cg']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128², S = 16")
    parser.add_argument("--n", type=int, default=None, help="cells per side (default 512)")
    parser.add_argument("--s-values", type=int, nargs="+", default=None,
                        help="numbers of sources (default 16 64)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median taken)")
    parser.add_argument("--sample", type=int, default=None,
                        help="single-source gradients timed per round (16; 8 quick)")
    parser.add_argument("--smoother", choices=sorted(SMOOTHERS), default="gauss_seidel",
                        help="AMG smoothing (default: the library's, Gauss–Seidel)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="this process's CPU time (default: steady on a shared machine) "
                             "or wall time")
    parser.add_argument("--json", help="write the record to this path")
    args = parser.parse_args(argv)
    n = args.n or (128 if args.quick else 512)
    s_values = args.s_values or ([16] if args.quick else [16, 64])
    repeats = args.repeats
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"{os.cpu_count()} cores, {platform.platform()}, {args.clock} clock, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    sample = args.sample or (8 if args.quick else 16)
    record = run(n, s_values, repeats, sample, args.smoother, args.clock,
                 log=lambda line: print(line, flush=True))
    print(table(record))
    for name, target in record["targets"].items():
        print(f"target {name}: {target['value']:.3g} against {target['target']:.3g}: "
              f"{'met' if target['met'] else 'missed'}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)
    return record


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

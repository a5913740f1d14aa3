"""Cost of one adjoint gradient against the number of parameters P.

On the 2D per-cell log-conductivity problem (``krylov_adjoint.gallery.diffusion_2d``), θ is
grouped in blocks of cells so that P runs from 10 to N, every θ describing the same
conductivity field (so A(θ) is the same matrix for every P). For each P the script times one
complete adjoint gradient (preconditioner set-up, primal solve, adjoint solve, VJPs) and
compares it, in the same run, with the routes a user would otherwise take:

- finite differences: P + 1 primal solves (the AMG set-up shared); measured directly for the
  smallest P, extrapolated from the measured primal solve time beyond;
- forward sensitivities: one primal and P tangent solves; a few tangent solves are measured
  and the rest extrapolated (said in the output).

Times are medians of ``--repeats`` rounds over every P; each gradient is timed right after a
primal solve (with its set-up) of the same model, and ``gradient_over_primal`` is the largest
ratio of the two medians over P. ``--json PATH`` writes a flat record, ``--plot PATH``
a log-log figure of time against P.

Usage::

    python scripts/bench_parameters.py --quick
    python scripts/bench_parameters.py --n 500 --repeats 5 --json bench.json --plot docs/img/p.png
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

import krylov_adjoint as ka
from krylov_adjoint.gallery import diffusion_2d


def block_shapes(n: int) -> list[tuple[int, int]]:
    """Blocks (bx, by) giving P = 10, 100, 1000, ... up to N = n² (per cell last)."""
    shapes = []
    p = 10
    while p < n * n:
        ax = 10 ** (len(str(p)) // 2)  # blocks along x: 10, 10, 100, 100, ... for P = 10, 100, ...
        ay = p // ax
        if ax <= n and ay <= n and n % ax == 0 and n % ay == 0:
            shapes.append((n // ax, n // ay))
        p *= 10
    shapes.append((1, 1))
    return shapes


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` over ``repeats`` calls, and its last return value."""
    times, out = [], None
    for _ in range(repeats):
        tick = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times), out


def make_solver(model: object, rtol: float) -> ka.AdjointSolver:
    """A fresh solver (no warm start, no reused set-up): CG + AMG."""
    return ka.AdjointSolver(model.problem, method="cg", preconditioner="amg", rtol=rtol,
                            warm_start=False)


def same_field_thetas(n: int, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """θ for every blocking, all describing one conductivity field.

    The field is the reference θ of the coarsest blocking, constant on its blocks; every
    finer blocking nests in it, so its block means represent the field exactly and A(θ) is
    the same matrix for every P. The gradient's cost is then compared at a fixed A.
    """
    bx0, by0 = shapes[0]
    coarse = diffusion_2d(n, block=(bx0, by0)).theta.reshape(n // bx0, n // by0)
    field = np.repeat(np.repeat(coarse, bx0, axis=0), by0, axis=1)
    return [field.reshape(n // bx, bx, n // by, by).mean(axis=(1, 3)).ravel()
            for bx, by in shapes]


def run(n: int, repeats: int, rtol: float, tangent_samples: int) -> dict:
    """Measure everything; return the flat JSON record."""
    shapes = block_shapes(n)
    models = [diffusion_2d(n, block=shape) for shape in shapes]
    thetas = same_field_thetas(n, shapes)
    probe = np.random.default_rng(0).standard_normal(n * n)
    reference = models[0].problem.operator.matvec(thetas[0], probe)
    for model, theta in zip(models, thetas, strict=True):
        product = model.problem.operator.matvec(theta, probe)
        if np.linalg.norm(product - reference) > 1e-12 * np.linalg.norm(reference):
            raise AssertionError(f"A(θ) differs for P = {model.n_params}")
    base, base_theta = models[-1], thetas[-1]

    def primal_with_setup() -> ka.SolveResult:
        return make_solver(base, rtol).solve(base_theta)

    primal_s, primal = median_time(primal_with_setup, repeats)
    warm = make_solver(base, rtol)
    warm.solve(base_theta)  # set-up done once, as finite differences would share it
    solve_only_s, _ = median_time(lambda: warm.solve(base_theta), repeats)
    setup_s = primal_s - solve_only_s

    # Every P once per round, each gradient right after a primal solve (with its set-up) of
    # the same model: drifts of the machine's load hit every P alike, and the ratio is
    # taken between neighbouring timings.
    primal_times: list[list[float]] = [[] for _ in models]
    gradient_times: list[list[float]] = [[] for _ in models]
    results: list[object] = [None] * len(models)
    for _ in range(repeats):
        for k, (model, theta) in enumerate(zip(models, thetas, strict=True)):
            tick = time.perf_counter()
            make_solver(model, rtol).solve(theta)
            primal_times[k].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            results[k] = make_solver(model, rtol).gradient(theta)
            gradient_times[k].append(time.perf_counter() - tick)

    p_values, gradient_s, fd_s, fd_measured, forward_s, records = [], [], [], [], [], []
    ratios = []
    for k, (model, theta) in enumerate(zip(models, thetas, strict=True)):
        p = model.n_params
        result = results[k]
        seconds = statistics.median(gradient_times[k])
        ratios.append(seconds / statistics.median(primal_times[k]))
        p_values.append(p)
        gradient_s.append(seconds)
        if p <= 10:  # finite differences measured: P + 1 primal solves on one set-up
            solver = make_solver(model, rtol)
            tick = time.perf_counter()
            solver.objective(theta)
            for j in range(p):
                step = np.zeros(p)
                step[j] = 1e-6
                solver.objective(theta + step)
            fd_s.append(time.perf_counter() - tick)
            fd_measured.append(True)
        else:
            fd_s.append(setup_s + (p + 1) * solve_only_s)
            fd_measured.append(False)
        tangent_solver = make_solver(model, rtol)
        tangent_solver.solve(theta)
        rng = np.random.default_rng(0)
        samples = min(tangent_samples, p)
        tick = time.perf_counter()
        for _ in range(samples):
            tangent_solver.directional_derivative(theta, rng.standard_normal(p))
        per_tangent = (time.perf_counter() - tick) / samples - solve_only_s
        forward_s.append(primal_s + p * max(per_tangent, solve_only_s))
        records.append({"p": p, "block": list(shapes[k]), "gradient_s": seconds,
                        "gradient_over_primal": ratios[-1],
                        "primal_iterations": result.primal.iterations,
                        "adjoint_iterations": result.adjoint_solve.iterations,
                        "adjoint_s": result.times["adjoint"], "vjp_s": result.times["gradient"]})
        print(f"P = {p:>9,}: gradient {seconds:7.3f} s ({ratios[-1]:4.2f} x primal), "
              f"iterations {result.primal.iterations}/{result.adjoint_solve.iterations}, "
              f"finite differences {fd_s[-1]:10.1f} s"
              f"{'' if fd_measured[-1] else ' (extrapolated)'}, forward {forward_s[-1]:10.1f} s "
              f"(extrapolated from {samples} tangent solves)")

    return {
        "n": n * n, "grid": [n, n], "repeats": repeats, "rtol": rtol,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "primal_s": primal_s, "primal_setup_s": setup_s, "primal_solve_s": solve_only_s,
        "primal_iterations": primal.iterations,
        "p_values": p_values, "adjoint_gradient_s": gradient_s,
        "finite_difference_s": fd_s, "finite_difference_measured": fd_measured,
        "forward_s": forward_s, "forward_tangent_samples": tangent_samples,
        "flatness": max(gradient_s) / min(gradient_s),
        "gradient_over_primal": max(ratios),
        "cases": records,
    }


def plot(record: dict, path: str) -> None:
    """Log-log time against P for the three routes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = record["p_values"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(p, record["adjoint_gradient_s"], "o-", label="adjoint gradient (measured)")
    ax.loglog(p, record["finite_difference_s"], "s--", label="finite differences (P+1 solves)")
    ax.loglog(p, record["forward_s"], "^--", label="forward sensitivities (P tangent solves)")
    ax.axhline(record["primal_s"], color="grey", lw=0.8, label="one primal solve with set-up")
    ax.set_xlabel("number of parameters P")
    ax.set_ylabel("seconds")
    ax.set_title(f"2D diffusion, N = {record['n']:,}: gradient cost against P")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="cells per side (default 500)")
    parser.add_argument("--quick", action="store_true", help="n = 200, 3 repeats (< 90 s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--tangent-samples", type=int, default=3)
    parser.add_argument("--json", help="write the record to this path")
    parser.add_argument("--plot", help="write a log-log PNG to this path")
    args = parser.parse_args(argv)
    n, repeats = (200, 3) if args.quick else (args.n, args.repeats)
    record = run(n, repeats, args.rtol, args.tangent_samples)
    print(f"primal (set-up + solve) {record['primal_s']:.3f} s; flatness "
          f"{record['flatness']:.2f} (target <= 1.2); gradient/primal "
          f"{record['gradient_over_primal']:.2f} (target <= 2.2)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)
    if args.plot:
        plot(record, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

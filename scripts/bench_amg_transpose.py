"""Benchmark: adjoint solves preconditioned with the exact transposed AMG cycle.

For each case (2D upwind convection-diffusion at Péclet 10, 100, 1000 and 3D Poisson) one
run measures, with the same right-hand sides:

* the AMG set-up (pyamg hierarchy) and the primal solve ``A x = b`` preconditioned by ``M``;
* the adjoint solve ``Aᵀ λ = g`` preconditioned by ``Mᵀ`` (the transposed cycle, including
  the one-off forming of the transposed levels);
* the adjoint solve preconditioned by ``M`` instead of ``Mᵀ`` (capped iterations);
* the adjoint solve with an AMG hierarchy rebuilt on ``Aᵀ`` (set-up and solve);
* the gradient assembly over ``A``'s sparsity pattern, ``-λ_i x_j`` for every nonzero;
* pyamg's own ``ml.solve(b, tol, accel=..., cycle=...)`` on the same hierarchy;
* the dot test ``|⟨Mu, v⟩ − ⟨u, Mᵀv⟩| / (‖Mu‖ ‖v‖)``.

Times are medians over ``--repeats`` runs (the set-up is rebuilt in every run). Run
``python scripts/bench_amg_transpose.py --quick`` for a check in about a minute, or without
``--quick`` for the full sizes (about 10⁶ unknowns per case).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyamg
import scipy
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from krylov_adjoint.gallery import convection_diffusion_matrix
from krylov_adjoint.krylov import solve
from krylov_adjoint.precond.amg import AMGPreconditioner

RTOL = 1e-8

#: The library's default AMG method, to which the gradient_over_primal targets apply.
DEFAULT_METHOD = "sa"

TARGETS = {
    "adjoint_iters": "adjoint iterations <= 1.1 x primal + 1",
    "gradient_over_primal_2d": "gradient_over_primal <= 1.35 (convection-diffusion, 10^6)",
    "gradient_over_primal_3d": "gradient_over_primal <= 1.45 (3D Poisson)",
    "overhead_vs_pyamg": "overhead_vs_pyamg <= 1.1",
    "max_transpose_dot_error": "max_transpose_dot_error <= 1e-12",
}


# ----------------------------------------------------------------------------- problems
def poisson_3d(m: int) -> sp.csr_array:
    """The 7-point Laplacian on an ``m × m × m`` grid (pyamg's gallery).

    Examples
    --------
    >>> poisson_3d(3).shape
    (27, 27)
    """
    return sp.csr_array(pyamg.gallery.poisson((m, m, m), format="csr"))


def pattern_vjp(A: sp.csr_array, lam: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cotangent of ``J`` with respect to every stored entry of ``A``: ``-λ_i x_j``.

    With ``A x = b`` and ``Aᵀ λ = ∂J/∂x``, ``∂J/∂A_ij = -λ_i x_j`` on the sparsity pattern,
    in the order of ``A.data``.

    Examples
    --------
    >>> A = sp.csr_array(np.array([[2.0, 1.0], [0.0, 3.0]]))
    >>> pattern_vjp(A, np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    array([-3., -4., -8.])
    """
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    return -(lam[rows] * x[A.indices])


@dataclass(frozen=True)
class Case:
    """One benchmark problem and the solver settings used on it."""

    name: str
    build: Callable[[], sp.csr_array]
    krylov: str  # "gmres" or "cg"
    amg: dict[str, Any]
    kind: str  # "2d" (nonsymmetric) or "3d" (symmetric)


def make_cases(quick: bool, grid_2d: int | None = None, grid_3d: int | None = None) -> list[Case]:
    """The benchmark cases at quick or full size (or at explicit grid sizes)."""
    m2 = grid_2d or (160 if quick else 1000)
    m3 = grid_3d or (30 if quick else 100)
    # The library's default method (smoothed aggregation, pyamg's "nonsymmetric" variant on
    # these matrices) first, then classical AMG and AIR.
    cases = [
        Case(f"cd2d-pe{pe}-{method}", (lambda pe=pe: convection_diffusion_matrix(m2, float(pe))),
             "gmres", {"method": method}, "2d")
        for pe in (10, 100, 1000)
        for method in ("sa", "rs", "air")
    ]
    # pyamg's own AIR smoothing (post-smoothing only), whose transpose has pre-smoothing only.
    cases.append(Case("cd2d-pe100-air-postonly", lambda: convection_diffusion_matrix(m2, 100.0),
                      "gmres", {"method": "air", "presmoother": "none"}, "2d"))
    cases.append(Case("poisson3d-sa", lambda: poisson_3d(m3), "cg", {"method": "sa"}, "3d"))
    return cases


# ----------------------------------------------------------------------------- measuring
def dot_test(M: AMGPreconditioner, pairs: int = 3, seed: int = 0) -> float:
    """Largest ``|⟨Mu, v⟩ − ⟨u, Mᵀv⟩| / (‖Mu‖ ‖v‖)`` over random pairs."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(pairs):
        u, v = rng.standard_normal(M.shape[0]), rng.standard_normal(M.shape[0])
        Mu = M.apply(u)
        error = abs(Mu @ v - u @ M.apply_transpose(v)) / (np.linalg.norm(Mu) * np.linalg.norm(v))
        worst = max(worst, float(error))
    return worst


def _relative_residual(A: Any, x: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def run_once(case: Case, A: sp.csr_array, b: np.ndarray, g: np.ndarray, *, restart: int,
             maxiter: int, wrong_cap: int, first: bool) -> dict[str, Any]:
    """One run of every measurement of ``case`` (the capped ones only when ``first``)."""
    km = case.krylov
    out: dict[str, Any] = {}
    M, out["setup_seconds"] = _timed(lambda: AMGPreconditioner(A, **case.amg))
    primal = solve(A, b, method=km, M=M, rtol=RTOL, restart=restart, maxiter=maxiter)
    adjoint = solve(A.T, g, method=km, M=M.T, rtol=RTOL, restart=restart, maxiter=maxiter)
    grad, out["gradient_seconds"] = _timed(lambda: pattern_vjp(A, adjoint.x, primal.x))
    start = time.perf_counter()
    AT = A.T.tocsr()
    MT = AMGPreconditioner(AT, **case.amg)
    out["setup_T_seconds"] = time.perf_counter() - start
    rebuilt = solve(AT, g, method=km, M=MT, rtol=RTOL, restart=restart, maxiter=maxiter)
    residuals: list[float] = []
    x_py, out["pyamg_seconds"] = _timed(lambda: M.hierarchy.solve(
        b, tol=RTOL, accel=km, cycle=M.cycle, maxiter=min(maxiter, A.shape[0]),
        residuals=residuals))
    out.update(
        primal_seconds=primal.seconds, primal_iters=primal.iterations,
        primal_converged=primal.converged,
        primal_rel_residual=_relative_residual(A, primal.x, b),
        adjoint_seconds=adjoint.seconds, adjoint_iters=adjoint.iterations,
        adjoint_converged=adjoint.converged,
        adjoint_rel_residual=_relative_residual(A.T, adjoint.x, g),
        transpose_setup_seconds=M.transpose_setup_seconds,
        adjoint_rebuilt_seconds=rebuilt.seconds, adjoint_rebuilt_iters=rebuilt.iterations,
        pyamg_iters=len(residuals) - 1,
        pyamg_rel_residual=_relative_residual(A, np.ravel(x_py), b),
        gradient_entries=int(grad.size),
        levels=M.levels, operator_complexity=M.operator_complexity, describe=M.describe(),
    )
    if first:
        wrong = solve(A.T, g, method=km, M=M, rtol=RTOL, restart=restart, maxiter=wrong_cap)
        out.update(adjoint_iters_with_M=wrong.iterations,
                   adjoint_with_M_converged=wrong.converged,
                   adjoint_with_M_rel_residual=_relative_residual(A.T, wrong.x, g),
                   adjoint_with_M_seconds=wrong.seconds,
                   dot_error=dot_test(M))
        # Diagnostic: the adjoint solve left-preconditioned, GMRES on Mᵀ Aᵀ = (A M)ᵀ (the
        # transpose of the primal's right-preconditioned operator), stopped on the
        # preconditioned residual |Mᵀ(g - Aᵀλ)| <= rtol |Mᵀ g|.
        n = A.shape[0]
        left_op = spla.LinearOperator((n, n), matvec=lambda v: M.apply_transpose(A.T @ v),
                                      dtype=np.float64)
        left = solve(left_op, M.apply_transpose(g), method="gmres", rtol=RTOL,
                     restart=restart, maxiter=maxiter)
        out.update(adjoint_left_iters=left.iterations,
                   adjoint_left_rel_residual=_relative_residual(A.T, left.x, g))
    return out


def run_case(case: Case, *, repeats: int, restart: int, maxiter: int, wrong_cap: int,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``case`` ``repeats`` times; medians of times, ratios from the medians."""
    A, build_seconds = _timed(case.build)
    rng = np.random.default_rng(1)
    b, g = rng.standard_normal(A.shape[0]), rng.standard_normal(A.shape[0])
    runs = []
    for k in range(repeats):
        runs.append(run_once(case, A, b, g, restart=restart, maxiter=maxiter,
                             wrong_cap=wrong_cap, first=(k == 0)))
        r = runs[-1]
        log(f"  {case.name} run {k + 1}/{repeats}: setup {r['setup_seconds']:.2f}s, "
            f"primal {r['primal_iters']} it {r['primal_seconds']:.2f}s, adjoint "
            f"{r['adjoint_iters']} it {r['adjoint_seconds']:.2f}s, rebuilt set-up "
            f"{r['setup_T_seconds']:.2f}s, pyamg {r['pyamg_iters']} it "
            f"{r['pyamg_seconds']:.2f}s")

    def med(key: str) -> float:
        return float(np.median([r[key] for r in runs]))

    first = runs[0]
    setup, primal, adjoint = med("setup_seconds"), med("primal_seconds"), med("adjoint_seconds")
    gradient, setup_T = med("gradient_seconds"), med("setup_T_seconds")
    rebuilt, pyamg_seconds = med("adjoint_rebuilt_seconds"), med("pyamg_seconds")
    base = setup + primal
    primal_iters = int(np.median([r["primal_iters"] for r in runs]))
    pyamg_iters = int(np.median([r["pyamg_iters"] for r in runs]))
    return {
        "name": case.name,
        "n": int(A.shape[0]),
        "nnz": int(A.nnz),
        "kind": case.kind,
        "krylov": case.krylov,
        "amg": case.amg,
        "amg_description": first["describe"],
        "levels": first["levels"],
        "operator_complexity": first["operator_complexity"],
        "matrix_build_seconds": build_seconds,
        "primal_iters": primal_iters,
        "adjoint_iters": int(np.median([r["adjoint_iters"] for r in runs])),
        "adjoint_iters_with_M": first["adjoint_iters_with_M"],
        "adjoint_with_M_converged": first["adjoint_with_M_converged"],
        "adjoint_with_M_rel_residual": first["adjoint_with_M_rel_residual"],
        "adjoint_rebuilt_iters": int(np.median([r["adjoint_rebuilt_iters"] for r in runs])),
        "adjoint_left_iters": first["adjoint_left_iters"],
        "adjoint_left_rel_residual": first["adjoint_left_rel_residual"],
        "pyamg_iters": pyamg_iters,
        "converged": all(r["primal_converged"] and r["adjoint_converged"] for r in runs),
        "primal_rel_residual": first["primal_rel_residual"],
        "adjoint_rel_residual": first["adjoint_rel_residual"],
        "pyamg_rel_residual": first["pyamg_rel_residual"],
        "setup_seconds": setup,
        "primal_seconds": primal,
        "adjoint_seconds": adjoint,
        "transpose_setup_seconds": med("transpose_setup_seconds"),
        "gradient_seconds": gradient,
        "setup_T_seconds": setup_T,
        "adjoint_rebuilt_seconds": rebuilt,
        "pyamg_seconds": pyamg_seconds,
        "gradient_over_primal": (base + adjoint + gradient) / base,
        # What one shared set-up allows: the adjoint costs exactly one more primal solve.
        "ideal_gradient_over_primal": (base + primal) / base,
        # The whole gradient against the primal solve a pyamg user runs today.
        "gradient_over_pyamg_primal": (base + adjoint + gradient) / (setup + pyamg_seconds),
        "rebuild_gradient_over_primal": (base + setup_T + rebuilt + gradient) / base,
        "overhead_vs_pyamg": primal / pyamg_seconds,
        "overhead_vs_pyamg_per_iteration": (primal / max(primal_iters, 1))
        / (pyamg_seconds / max(pyamg_iters, 1)),
        "dot_error": first["dot_error"],
        "runs": runs,
    }


def check_targets(results: dict[str, Any]) -> list[str]:
    """Human-readable lines: each target with its measured value and PASS/MISS."""
    lines = []
    for c in results["cases"]:
        limit = 1.1 * c["primal_iters"] + 1
        ok = c["adjoint_iters"] <= limit
        lines.append(f"{'PASS' if ok else 'MISS'} {c['name']}: adjoint {c['adjoint_iters']} "
                     f"iterations <= 1.1 x {c['primal_iters']} + 1")
        ratio, ideal = c["gradient_over_primal"], _ideal(c)
        if c["amg"] == {"method": DEFAULT_METHOD}:
            bound = 1.45 if c["name"].startswith("poisson3d") else 1.35
            lines.append(f"{'PASS' if ratio <= bound else 'MISS'} {c['name']}: "
                         f"gradient_over_primal {ratio:.3f} <= {bound}")
        else:
            # The 1.35 target is set for the default method; other set-ups are compared with
            # what their own set-up/solve proportion allows, (set-up + 2 solves)/(set-up +
            # solve).
            lines.append(f"INFO {c['name']}: gradient_over_primal {ratio:.3f}, ideal "
                         f"{ideal:.3f} (measured/ideal {ratio / ideal:.3f})")
        ok = c["overhead_vs_pyamg"] <= 1.1
        lines.append(f"{'PASS' if ok else 'MISS'} {c['name']}: overhead_vs_pyamg "
                     f"{c['overhead_vs_pyamg']:.3f} <= 1.1")
    error = results["max_transpose_dot_error"]
    lines.append(f"{'PASS' if error <= 1e-12 else 'MISS'} max_transpose_dot_error "
                 f"{error:.1e} <= 1e-12")
    return lines


# ----------------------------------------------------------------------------- output
def _amg_label(options: dict[str, Any]) -> str:
    extra = [f"{k}={v}" for k, v in options.items() if k != "method"]
    return " ".join([options["method"], *extra])


def _ideal(case: dict[str, Any]) -> float:
    """(set-up + 2 primal solves) / (set-up + primal): the adjoint costing one more solve."""
    base = case["setup_seconds"] + case["primal_seconds"]
    return (base + case["primal_seconds"]) / base


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table (one row per case)."""
    head = ("| case | n | AMG | primal it | adjoint it (Mᵀ) | adjoint it (M) | set-up s | "
            "primal s | adjoint s | gradient s | gradient / primal | ideal | rebuild / primal | "
            "pyamg it | vs pyamg |\n"
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    cap = results["wrong_cap"]
    for c in results["cases"]:
        with_m = (f"{c['adjoint_iters_with_M']}" if c["adjoint_with_M_converged"]
                  else f"> {cap} (cap)")
        rows.append(
            f"| {c['name']} | {c['n']:,} | {_amg_label(c['amg'])} | {c['primal_iters']} | "
            f"{c['adjoint_iters']} | {with_m} | {c['setup_seconds']:.2f} | "
            f"{c['primal_seconds']:.2f} | {c['adjoint_seconds']:.2f} | "
            f"{c['gradient_seconds']:.3f} | {c['gradient_over_primal']:.2f} | "
            f"{_ideal(c):.2f} | {c['rebuild_gradient_over_primal']:.2f} | {c['pyamg_iters']} | "
            f"{c['overhead_vs_pyamg']:.2f} |")
    return "\n".join([head, *rows])


def _tick_label(name: str) -> str:
    """``cd2d-pe100-air-postonly`` -> ``Pe 100``, ``air`` and ``postonly`` on three lines."""
    problem, _, rest = name.partition("-")
    if problem == "cd2d":
        peclet, _, rest = rest.partition("-")
        problem = f"Pe {peclet[2:]}"
    elif problem == "poisson3d":
        problem = "Poisson 3D"
    return "\n".join([problem, *rest.split("-")])


def plot(results: dict[str, Any], path: str) -> None:
    """Iterations (primal, adjoint with Mᵀ, adjoint with M) and cost ratios per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results["cases"]
    names = [_tick_label(c["name"]) for c in cases]
    x = np.arange(len(cases))
    cap = results["wrong_cap"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.4))
    w = 0.27
    ax1.bar(x - w, [c["primal_iters"] for c in cases], w, label="primal, M")
    ax1.bar(x, [c["adjoint_iters"] for c in cases], w, label="adjoint, Mᵀ (transposed cycle)")
    wrong = [c["adjoint_iters_with_M"] for c in cases]
    bars = ax1.bar(x + w, wrong, w, label=f"adjoint, M instead of Mᵀ (cap {cap})",
                   color="tab:red", alpha=0.75)
    for bar, c in zip(bars, cases, strict=True):
        if not c["adjoint_with_M_converged"]:
            bar.set_hatch("//")
            ax1.annotate("no conv.", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                         ha="center", va="bottom", fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylim(top=cap * 8)
    ax1.set_xticks(x, names, fontsize=7)
    ax1.set_ylabel(f"Krylov iterations to rtol {RTOL:g}")
    ax1.set_title("Adjoint preconditioned with Mᵀ vs M")
    ax1.legend(fontsize=7, loc="upper left", ncol=2)
    w = 0.38
    ax2.bar(x - w / 2, [c["gradient_over_primal"] for c in cases], w,
            label="primal + adjoint (Mᵀ) + gradient")
    ax2.bar(x + w / 2, [c["rebuild_gradient_over_primal"] for c in cases], w,
            label="... with AMG rebuilt on Aᵀ")
    ax2.scatter(x - w / 2, [_ideal(c) for c in cases], marker="_", s=160, color="k",
                zorder=3, label="ideal: set-up + 2 primal solves")
    ax2.axhline(1.0, color="k", lw=0.8)
    top = max(max(c["gradient_over_primal"], c["rebuild_gradient_over_primal"]) for c in cases)
    ax2.set_ylim(0, top * 1.3)
    ax2.set_xticks(x, names, fontsize=7)
    ax2.set_ylabel("cost / (set-up + primal solve)")
    ax2.set_title(f"Gradient cost (median of {results['repeats']} runs)")
    ax2.legend(fontsize=7, loc="upper left", ncol=2)
    sizes = ", ".join(sorted({f"{c['n']:,}" for c in cases}))
    fig.suptitle(f"AMG preconditioner with its exact transposed cycle (n = {sizes}; "
                 f"{results['machine']['cpus']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pyamg": pyamg.__version__,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (160x160 and 30^3), about a minute")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (medians)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG plot (matplotlib)")
    parser.add_argument("--cases", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--wrong-cap", type=int, default=None,
                        help="iteration cap of the adjoint solve preconditioned with M "
                             "(default 300, 100 with --quick)")
    parser.add_argument("--restart", type=int, default=50, help="GMRES restart length")
    parser.add_argument("--maxiter", type=int, default=500,
                        help="iteration cap of the primal and Mᵀ-adjoint solves")
    parser.add_argument("--grid-2d", type=int, help="override the 2D grid size m (m x m)")
    parser.add_argument("--grid-3d", type=int, help="override the 3D grid size m (m^3)")
    parser.add_argument("--from-json", metavar="PATH",
                        help="do not run: print the table and targets of a saved JSON file "
                             "(and plot it with --plot)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.wrong_cap is None:
        args.wrong_cap = 100 if args.quick else 300
    if args.from_json:
        with open(args.from_json) as handle:
            results = json.load(handle)
        print(markdown_table(results))
        print("\n".join(check_targets(results)))
        if args.plot:
            plot(results, args.plot)
        return results

    cases = make_cases(args.quick, args.grid_2d, args.grid_3d)
    if args.cases:
        unknown = set(args.cases) - {c.name for c in cases}
        if unknown:
            parser.error(f"unknown case(s) {sorted(unknown)}")
        cases = [c for c in cases if c.name in args.cases]

    start = time.perf_counter()
    results: dict[str, Any] = {
        "quick": args.quick, "repeats": args.repeats, "rtol": RTOL,
        "wrong_cap": args.wrong_cap, "restart": args.restart, "machine": machine(),
        "cases": [],
    }
    for case in cases:
        print(f"{case.name} ({case.krylov}, AMG {case.amg})", flush=True)
        results["cases"].append(run_case(
            case, repeats=args.repeats, restart=args.restart, maxiter=args.maxiter,
            wrong_cap=args.wrong_cap, log=lambda s: print(s, flush=True)))
    results["max_transpose_dot_error"] = max(c["dot_error"] for c in results["cases"])
    results["targets"] = check_targets(results)
    results["total_seconds"] = time.perf_counter() - start

    print()
    print(markdown_table(results))
    print()
    print("\n".join(results["targets"]))
    print(f"max_transpose_dot_error = {results['max_transpose_dot_error']:.2e}; "
          f"total {results['total_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=float)
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

"""Newton–CG against L-BFGS-B on the Bayesian inverse-conductivity problem, across meshes.

The problem of ``examples/bayesian_inverse_conductivity.py``: a per-cell log-conductivity
from 1 % noisy point observations, ``J = ½‖O u − d‖²/σ² + ½ θᵀRθ`` with the prior precision
``R = α(DᵀD + δ₀h² I)``. On each mesh both optimisers start from θ = 0 and stop at
``‖g‖/‖g₀‖ ≤ 10⁻⁶``:

- Newton–CG (:func:`krylov_adjoint.newton.newton_cg`), CG preconditioned by R⁻¹, three
  Gauss–Newton iterations then Newton;
- L-BFGS-B through :func:`krylov_adjoint.adapters.minimize` (what a user would otherwise
  use), stopped by a callback at the same gradient reduction.

Recorded per mesh: outer iterations, linear solves (primal, adjoint and incremental: 2 per
gradient, 2 per Hessian action, 1 per J-only evaluation), wall time, final data misfit;
``hessian_over_gradient``, the median time of one Hessian action over the median time of one
gradient at the MAP point, the AMG set-up reused (a gradient at θ, then actions at θ);
``eigs_above_one``, the eigenvalues above 1 of the prior-preconditioned Gauss–Newton Hessian
(``randomized_eigh`` with ``--k`` pairs; ``saturated`` when all k exceed 1).

OpenBLAS is asked for one thread (``OPENBLAS_NUM_THREADS=1`` unless set, before numpy
loads); the value is recorded. Usage::

    python scripts/bench_newton.py --quick              # 32², 48², 64², under 90 s
    python scripts/bench_newton.py --json newton.json   # 64², 128², 256²
    python scripts/bench_newton.py --full               # and 512²
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import numpy as np  # noqa: E402  (after the thread setting)
from bayesian_inverse_conductivity import GaussianPrior  # noqa: E402
from inverse_conductivity import noisy_problem  # noqa: E402

import krylov_adjoint as ka  # noqa: E402
from krylov_adjoint.adapters import minimize  # noqa: E402
from krylov_adjoint.gallery import diffusion_2d  # noqa: E402
from krylov_adjoint.newton import newton_cg  # noqa: E402
from krylov_adjoint.uq import columnwise, randomized_eigh  # noqa: E402

GTOL = 1e-6
TARGETS = {"newton_iteration_spread": 2, "solves_ratio": 1.0 / 3.0,
           "hessian_over_gradient": 1.1}


def build(n: int, alpha: float, observe_every: int) -> tuple[Any, Any, Any, Any]:
    """Model, problem (misfit + prior), misfit and prior on an n × n mesh."""
    model = diffusion_2d(n, observe_every=observe_every)
    _, parts = noisy_problem(model, 0.01, alpha, 0)
    prior = GaussianPrior(model.grid, alpha, 1.0)
    problem = ka.AdjointProblem(model.problem.operator, model.problem.rhs,
                                parts["misfit"] + prior.regulariser(),
                                n_params=model.n_params)
    return model, problem, parts["misfit"], prior


def new_solver(problem: Any, rtol: float) -> ka.AdjointSolver:
    return ka.AdjointSolver(problem, method="cg", preconditioner="amg", rtol=rtol)


def run_newton(problem: Any, prior: Any, theta0: np.ndarray, rtol: float) -> dict[str, Any]:
    solver = new_solver(problem, rtol)
    tick = time.perf_counter()
    fit = newton_cg(solver, theta0, prior=prior, gtol=GTOL, gauss_newton_iterations=3,
                    maxiter=60, raise_on_failure=False)
    seconds = time.perf_counter() - tick
    return {"theta": fit.theta, "iterations": fit.iterations, "solves": fit.solves,
            "seconds": seconds, "converged": bool(fit.converged),
            "reduction": fit.gradient_norm / fit.initial_gradient_norm,
            "cg_iterations": fit.cg_iterations, "solver": solver}


def remember_norms(solver: ka.AdjointSolver) -> dict[bytes, float]:
    """Make ``solver.gradient`` remember ‖g‖ at every θ (for the stopping callback: scipy's
    L-BFGS-B passes the callback x and J only)."""
    norms: dict[bytes, float] = {}
    gradient = solver.gradient

    def recorded(theta: Any, *args: Any, **kwargs: Any) -> Any:
        result = gradient(theta, *args, **kwargs)
        norms[np.ascontiguousarray(theta).tobytes()] = float(np.linalg.norm(result.gradient))
        return result

    solver.gradient = recorded  # type: ignore[method-assign]
    return norms


def run_lbfgs(problem: Any, theta0: np.ndarray, rtol: float, maxiter: int) -> dict[str, Any]:
    solver = new_solver(problem, rtol)
    norms = remember_norms(solver)
    g0 = float(np.linalg.norm(solver.gradient(theta0).gradient))
    reached = {"reduction": 1.0}

    def stop(intermediate_result: Any) -> None:
        norm = norms.get(np.ascontiguousarray(intermediate_result.x).tobytes())
        if norm is not None:
            reached["reduction"] = norm / g0
            if norm <= GTOL * g0:
                raise StopIteration

    tick = time.perf_counter()
    fit = minimize(solver, theta0, method="L-BFGS-B", callback=stop,
                   options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": 0.0,
                            "gtol": 0.0})
    seconds = time.perf_counter() - tick
    return {"theta": fit.x, "iterations": int(fit.nit), "solves": 2 * int(fit.n_solves),
            "seconds": seconds, "converged": reached["reduction"] <= GTOL,
            "reduction": reached["reduction"], "message": str(fit.message)}


def median_seconds(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def hessian_timing(problem: Any, theta: np.ndarray, rtol: float, repeats: int
                   ) -> dict[str, float]:
    """Median seconds of a gradient and of the Hessian and Gauss–Newton actions at θ.

    A solver without warm starts (every solve from x₀ = 0, like the actions' incremental
    solves) and with its AMG set-up made before the timings: each gradient is taken at a
    distinct point ``θ + 10⁻⁹ zᵢ`` (a solver returns a remembered gradient at the same θ),
    each action at θ after a gradient there, reusing its x, λ and set-up.
    """
    solver = ka.AdjointSolver(problem, method="cg", preconditioner="amg", rtol=rtol,
                              warm_start=False)
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(theta.size)
    points = [theta + 1e-9 * rng.standard_normal(theta.size) for _ in range(repeats + 1)]
    solver.gradient(points.pop())
    gradient = median_seconds(lambda: solver.gradient(points.pop()), repeats)
    solver.gradient(theta)
    hessian = median_seconds(lambda: solver.hessian_vector_product(theta, direction), repeats)
    gauss_newton = median_seconds(
        lambda: solver.gauss_newton_vector_product(theta, direction), repeats)
    return {"gradient": gradient, "hessian": hessian, "gauss_newton": gauss_newton}


def count_eigs(solver: ka.AdjointSolver, prior: Any, theta: np.ndarray, k: int
               ) -> dict[str, Any]:
    """Eigenvalues above 1 of ``H_GN v = μ R v`` (misfit part only) at θ."""
    solver.gradient(theta)

    def misfit_gauss_newton(v: np.ndarray) -> np.ndarray:
        return solver.gauss_newton_vector_product(theta, v).product - prior.apply(v)

    k = min(k, theta.size)
    pairs = randomized_eigh(columnwise(misfit_gauss_newton), prior.apply, prior.apply_inverse,
                            k, n_local=theta.size, rng=1)
    above = int(np.sum(pairs.eigenvalues > 1.0))
    return {"above": above, "saturated": above == pairs.k, "k": pairs.k,
            "smallest": float(pairs.eigenvalues[-1])}


def run(meshes: list[int], *, alpha: float, observe_every: int, rtol: float, k: int,
        repeats: int, lbfgs_maxiter: int, log: Any = print) -> dict[str, Any]:
    rows = []
    for n in meshes:
        model, problem, misfit, prior = build(n, alpha, observe_every)
        theta0 = np.zeros(model.n_params)
        newton = run_newton(problem, prior, theta0, rtol)
        lbfgs = run_lbfgs(problem, theta0, rtol, lbfgs_maxiter)
        solver = newton["solver"]
        timing = hessian_timing(problem, newton["theta"], rtol, repeats)
        eigs = count_eigs(solver, prior, newton["theta"], k)

        def data_misfit(theta: np.ndarray, solver: Any = solver, misfit: Any = misfit) -> float:
            return float(misfit.value(solver.gradient(theta).x, theta))

        row = {"n": n, "P": model.n_params, "observations": int(misfit.d.size)
               if hasattr(misfit, "d") else None,
               "newton_iterations": newton["iterations"], "newton_solves": newton["solves"],
               "newton_cg_iterations": newton["cg_iterations"],
               "newton_seconds": newton["seconds"], "newton_converged": newton["converged"],
               "newton_reduction": newton["reduction"],
               "newton_misfit": data_misfit(newton["theta"]),
               "lbfgs_iterations": lbfgs["iterations"], "lbfgs_solves": lbfgs["solves"],
               "lbfgs_seconds": lbfgs["seconds"], "lbfgs_converged": lbfgs["converged"],
               "lbfgs_reduction": lbfgs["reduction"], "lbfgs_message": lbfgs["message"],
               "lbfgs_misfit": data_misfit(lbfgs["theta"]),
               "gradient_seconds": timing["gradient"], "hessian_seconds": timing["hessian"],
               "gauss_newton_seconds": timing["gauss_newton"],
               "hessian_over_gradient": timing["hessian"] / timing["gradient"],
               "gauss_newton_over_gradient": timing["gauss_newton"] / timing["gradient"],
               "eigs_above_one": eigs["above"], "eigs_saturated": eigs["saturated"],
               "eigs_k": eigs["k"], "eigs_smallest": eigs["smallest"]}
        rows.append(row)
        log(f"{n}²: Newton {row['newton_iterations']} it / {row['newton_solves']} solves / "
            f"{row['newton_seconds']:.1f} s; L-BFGS-B {row['lbfgs_iterations']} it / "
            f"{row['lbfgs_solves']} solves / {row['lbfgs_seconds']:.1f} s; H/g "
            f"{row['hessian_over_gradient']:.2f}; μ > 1: {row['eigs_above_one']}"
            f"{' (saturated)' if row['eigs_saturated'] else ''}")
    newton_its = [r["newton_iterations"] for r in rows]
    finest = rows[-1]
    ratio = finest["newton_solves"] / finest["lbfgs_solves"]
    worst_hg = max(r["hessian_over_gradient"] for r in rows)
    record = {
        "meshes": meshes,
        "P": [r["P"] for r in rows],
        "newton_iterations": newton_its,
        "lbfgs_iterations": [r["lbfgs_iterations"] for r in rows],
        "newton_solves": [r["newton_solves"] for r in rows],
        "lbfgs_solves": [r["lbfgs_solves"] for r in rows],
        "newton_seconds": [r["newton_seconds"] for r in rows],
        "lbfgs_seconds": [r["lbfgs_seconds"] for r in rows],
        "newton_misfit": [r["newton_misfit"] for r in rows],
        "lbfgs_misfit": [r["lbfgs_misfit"] for r in rows],
        "newton_converged": [r["newton_converged"] for r in rows],
        "lbfgs_converged": [r["lbfgs_converged"] for r in rows],
        "newton_reduction": [r["newton_reduction"] for r in rows],
        "lbfgs_reduction": [r["lbfgs_reduction"] for r in rows],
        "lbfgs_message": [r["lbfgs_message"] for r in rows],
        "hessian_over_gradient": [r["hessian_over_gradient"] for r in rows],
        "gauss_newton_over_gradient": [r["gauss_newton_over_gradient"] for r in rows],
        "gradient_seconds": [r["gradient_seconds"] for r in rows],
        "eigs_above_one": [r["eigs_above_one"] for r in rows],
        "eigs_saturated": [r["eigs_saturated"] for r in rows],
        "eigs_k": [r["eigs_k"] for r in rows],
        "rows": rows,
        "targets": {
            "newton_iteration_spread": {"value": max(newton_its) - min(newton_its),
                                        "target": TARGETS["newton_iteration_spread"]},
            "finest_solves_ratio": {"value": ratio, "target": TARGETS["solves_ratio"]},
            "hessian_over_gradient": {"value": worst_hg,
                                      "target": TARGETS["hessian_over_gradient"]},
        },
        "settings": {"alpha": alpha, "delta0": 1.0, "observe_every": observe_every,
                     "noise": 0.01, "rtol": rtol, "gtol": GTOL, "k": k, "repeats": repeats},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "python": platform.python_version(), "cores": os.cpu_count()},
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    targets = record["targets"]
    targets["newton_iteration_spread"]["met"] = (targets["newton_iteration_spread"]["value"]
                                                 <= TARGETS["newton_iteration_spread"])
    targets["finest_solves_ratio"]["met"] = ratio <= TARGETS["solves_ratio"]
    targets["hessian_over_gradient"]["met"] = worst_hg <= TARGETS["hessian_over_gradient"]
    return record


def table(record: dict[str, Any]) -> str:
    lines = ["| mesh | Newton it | Newton solves | Newton s | L-BFGS-B it | L-BFGS-B solves "
             "| L-BFGS-B s | misfit N / L | H/g | GN/g | μ > 1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        sat = "+" if r["eigs_saturated"] else ""
        lines.append(
            f"| {r['n']}² | {r['newton_iterations']} | {r['newton_solves']} | "
            f"{r['newton_seconds']:.1f} | {r['lbfgs_iterations']} | {r['lbfgs_solves']} | "
            f"{r['lbfgs_seconds']:.1f} | {r['newton_misfit']:.1f} / {r['lbfgs_misfit']:.1f} | "
            f"{r['hessian_over_gradient']:.2f} | {r['gauss_newton_over_gradient']:.2f} | "
            f"{r['eigs_above_one']}{sat} |")
    return "\n".join(lines)


def plot(record: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    P = record["P"]
    ax.loglog(P, record["newton_solves"], "o-", label="Newton–CG (prior-preconditioned)")
    ax.loglog(P, record["lbfgs_solves"], "s-", label="L-BFGS-B")
    ax.set_xlabel("parameters P (= cells)")
    ax.set_ylabel(f"linear solves to ‖g‖/‖g₀‖ ≤ {GTOL:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="meshes 32², 48², 64²")
    parser.add_argument("--full", action="store_true", help="add 512²")
    parser.add_argument("--meshes", type=int, nargs="+", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=None,
                        help="eigenpairs asked of randomized_eigh (default 80; 40 --quick)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the timings")
    parser.add_argument("--alpha", type=float, default=300.0, help="prior weight α")
    parser.add_argument("--observe-every", type=int, default=4, help="sensor spacing")
    parser.add_argument("--rtol", type=float, default=1e-10, help="tolerance of the solves")
    parser.add_argument("--lbfgs-maxiter", type=int, default=3000)
    parser.add_argument("--json", help="write the record to this path")
    parser.add_argument("--plot", help="write a figure of solves against P to this path")
    args = parser.parse_args(argv)
    meshes = args.meshes or ([32, 48, 64] if args.quick else [64, 128, 256])
    if args.full and args.meshes is None:
        meshes = meshes + [512]
    k = args.k or (40 if args.quick else 80)
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"{os.cpu_count()} cores, {platform.platform()}", flush=True)
    record = run(meshes, alpha=args.alpha, observe_every=args.observe_every, rtol=args.rtol,
                 k=k, repeats=args.repeats, lbfgs_maxiter=args.lbfgs_maxiter,
                 log=lambda line: print(line, flush=True))
    print(table(record))
    for name, target in record["targets"].items():
        print(f"target {name}: {target['value']:.3g} against {target['target']:.3g}: "
              f"{'met' if target['met'] else 'missed'}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)
    if args.plot:
        plot(record, args.plot)
    return record


if __name__ == "__main__":
    main()

"""Electrical impedance tomography: a conductivity per cell from S boundary current patterns.

The model is :func:`krylov_adjoint.gallery.eit_2d`: steady diffusion ``−∇·(e^θ ∇u) = fₛ`` on
the unit square, θ one log-conductivity per cell (P = N), S electrodes evenly spaced around
the boundary and S "adjacent" current patterns (in at electrode s, out at electrode s + 1).
For each pattern the potential of every boundary cell is measured, with 1 % Gaussian noise.
The objective sums a noise-weighted misfit over the sources and adds a smoothness term,

    J(θ) = Σₛ ½‖O uₛ(θ) − dₛ‖² / σₛ² + (α/2)‖D θ‖²,   A(θ) uₛ = fₛ,  s = 1..S,

one operator A(θ) and S right-hand sides: :meth:`~krylov_adjoint.AdjointSolver.sources_gradient`
gives J and dJ/dθ from S primal and S adjoint CG solves on one AMG set-up (the operator
declared ``block=True``: its products and its VJP take (N, S) blocks). The gradient is checked
first by a Taylor test and against the sum of S single-source gradients; then L-BFGS-B
(scipy) minimises J from θ = 0.

Run: ``python examples/eit_inversion.py [--n 64] [--sources 16] [--quick] [--out DIR]``; the
figure (``app_eit_inversion.png``: truth, recovery with the electrodes, misfit history) is
written only with ``--out``.
"""

from __future__ import annotations

import argparse
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
from inverse_conductivity import difference_operator
from scipy.optimize import minimize

import krylov_adjoint as ka
from krylov_adjoint.gallery import eit_2d


def regularised_sources(eit: Any, noise: float, alpha: float) -> ka.Sources:
    """The model's sources with noise-weighted misfits ½‖O uₛ − dₛ‖²/σₛ² (σₛ the noise level
    of pattern s) and the smoothness term (α/2)‖Dθ‖² added to source 0's: J = Σₛ Jₛ counts
    a term on θ alone once."""
    objectives: list[ka.Objective] = []
    for clean in eit.sources.objectives:
        d = np.asarray(clean.d)
        sigma = noise * float(np.abs(d).max())
        objectives.append(ka.LeastSquaresMisfit(clean.O, d, weights=np.full(d.size,
                                                                            sigma**-2)))
    objectives[0] = objectives[0] + ka.Tikhonov(alpha, L=difference_operator(eit.model.grid))
    return ka.Sources(list(eit.sources.rhs), objectives)


def single_source_sum(eit: Any, sources: ka.Sources, theta: np.ndarray) -> np.ndarray:
    """Σₛ dJₛ/dθ by S separate single-source gradients (each its own solver and set-up)."""
    total = np.zeros(theta.size)
    for s in range(len(sources)):
        problem = ka.AdjointProblem(eit.operator, *sources.single(s), n_params=theta.size)
        total += ka.AdjointSolver(problem, rtol=1e-11).gradient(theta).gradient
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="cells per side (default 64)")
    parser.add_argument("--sources", type=int, default=None,
                        help="current patterns S (default 16)")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="noise standard deviation, relative to each pattern's max |data|")
    parser.add_argument("--alpha", type=float, default=30.0, help="smoothness weight α")
    parser.add_argument("--maxiter", type=int, default=150, help="L-BFGS-B iterations")
    parser.add_argument("--rtol", type=float, default=1e-10, help="tolerance of the solves")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, "truth, recovery and misfit history "
                                     "(app_eit_inversion.png; no figure without --out)")
    args = parser.parse_args(argv)
    n = args.n or (24 if args.quick else 64)
    count = args.sources or (8 if args.quick else 16)
    maxiter = min(args.maxiter, 30) if args.quick else args.maxiter
    clock = _common.Stopwatch()
    eit = eit_2d(n, n_sources=count, noise=args.noise, seed=args.seed)
    sources = regularised_sources(eit, args.noise, args.alpha)
    theta_true = np.asarray(eit.theta_true)
    theta0 = np.zeros(eit.model.n_params)
    clock.lap("set-up")

    # 1. The gradient over all sources: a Taylor test at a rough point, and the sum of S
    #    single-source gradients (S set-ups) against the one call (one set-up).
    checker = ka.AdjointSolver(eit.model.problem, rtol=1e-12)
    rough = theta0 + 0.1 * np.random.default_rng(1).standard_normal(theta0.size)
    at_rough = checker.sources_gradient(rough, sources)
    taylor = ka.verify.taylor_test(lambda th: checker.sources_gradient(th, sources).objective,
                                   rough, at_rough.gradient, rng=0, value=at_rough.objective)
    print(taylor.summary())
    separate = single_source_sum(eit, sources, rough)
    agreement = float(np.linalg.norm(at_rough.gradient - separate) / np.linalg.norm(separate))
    print(f"sum of {count} single-source gradients against one sources_gradient: relative "
          f"difference {agreement:.2e}")
    clock.lap("checks")

    # 2. L-BFGS-B: each new θ costs S primal and S adjoint solves on one (reused) AMG set-up.
    solver = ka.AdjointSolver(eit.model.problem, rtol=args.rtol)
    history: list[float] = []
    last: dict[str, Any] = {}

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        result = solver.sources_gradient(theta, sources)
        history.append(result.objective)
        last["result"] = result
        return result.objective, result.gradient

    initial = solver.sources_gradient(theta0, sources)
    fit = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=[(-5.0, 5.0)] * theta0.size,
                   options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-9})
    clock.lap("optimisation")
    result = last["result"]
    print(result.summary())
    figure = None
    if args.out is not None:
        figure = _common.figure_path(args.out, "app_eit_inversion.png")
        plot(eit, theta_true, fit.x, history, figure)
    error = float(np.linalg.norm(fit.x - theta_true) / np.linalg.norm(theta_true))
    return _common.print_summary({
        "example": "eit_inversion",
        "grid": list(eit.model.grid), "N": eit.model.n, "P": eit.model.n_params,
        "sources": count, "measurements_per_source": int(eit.observe.shape[0]),
        "noise": args.noise, "alpha": args.alpha,
        "taylor_rate": taylor.min_rate, "taylor_passed": bool(taylor.passed),
        "single_source_sum_difference": agreement,
        "initial_objective": initial.objective,
        "final_objective": float(fit.fun),
        "relative_error": error,
        "iterations": int(fit.nit), "evaluations": int(fit.nfev),
        "solves": result.solves,
        "primal_iterations_last": result.primal_iterations,
        "adjoint_iterations_last": result.adjoint_iterations,
        "preconditioner_setups": solver.setups,
        "message": str(fit.message),
        "seconds": clock.elapsed, "seconds_checks": clock.laps["checks"],
        "seconds_optimisation": clock.laps["optimisation"],
        "figure": None if figure is None else _common.shown_path(figure),
    })


def plot(eit: Any, truth: np.ndarray, recovered: np.ndarray, history: list[float],
         out: Any) -> None:
    """Truth, recovery with the electrodes, and the objective per evaluation."""
    plt = _common.pyplot()
    grid = eit.model.grid
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    lo, hi = float(truth.min()), float(truth.max())
    for ax, values, title in ((axes[0], truth, "true log-conductivity θ★"),
                              (axes[1], recovered, f"recovered θ ({len(eit.sources)} sources)")):
        image = ax.imshow(values.reshape(grid).T, origin="lower", extent=(0, 1, 0, 1),
                          cmap="RdBu_r", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    cells = np.unravel_index(eit.electrodes, grid)
    axes[1].plot((cells[0] + 0.5) / grid[0], (cells[1] + 0.5) / grid[1], "ks", ms=4)
    fig.colorbar(image, ax=axes[:2], shrink=0.85)
    axes[2].semilogy(np.arange(len(history)), history, "-", lw=1.5)
    axes[2].set_xlabel("evaluation (S primal + S adjoint solves each)")
    axes[2].set_ylabel("J = Σ misfits + regulariser")
    axes[2].grid(True, which="both", alpha=0.3)
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main()

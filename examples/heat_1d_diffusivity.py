"""Fit the diffusivity of a 1D heat equation from one implicit-Euler step.

``(I + dt·K(κ)) u¹ = u⁰``: the data are the temperatures u¹ observed after one step. With a
scalar diffusivity (P = 1) the adjoint gradient is checked against a central finite difference
and the forward-mode derivative; with one diffusivity per cell (P = n + 1) a few L-BFGS-B
iterations fit the profile. Every gradient costs one primal and one adjoint tridiagonal solve.
The figure ``heat_1d_diffusivity.png`` shows the fitted log-diffusivity against the truth and
the starting guess, and the misfit per iteration.

Run: ``python examples/heat_1d_diffusivity.py [--n 2000] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
from scipy.optimize import OptimizeResult, minimize

import krylov_adjoint as ka
from krylov_adjoint.gallery import heat_1d


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="interior nodes")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, "the fitted diffusivity against the truth "
                                     "(heat_1d_diffusivity.png)")
    args = parser.parse_args(argv)
    args.out = str(_common.figure_path(args.out, "heat_1d_diffusivity.png"))
    n = 200 if args.quick else args.n
    start = time.perf_counter()

    # 1. scalar diffusivity: adjoint against finite differences and forward mode
    scalar = heat_1d(n, diffusivity="scalar")
    solver = ka.AdjointSolver(scalar.problem, preconditioner="ilu", rtol=1e-12)
    result = solver.gradient(scalar.theta)
    h = 1e-6
    plus = solver.objective(scalar.theta + h)
    minus = solver.objective(scalar.theta - h)
    finite_difference = (plus - minus) / (2 * h)
    forward = solver.directional_derivative(scalar.theta, np.ones(1)).derivative
    print(f"scalar κ: dJ/dθ adjoint {result.gradient[0]:.10e}, forward {forward:.10e}, "
          f"central difference {finite_difference:.10e}")
    print(result.summary())

    # 2. per-cell diffusivity: fit with L-BFGS-B, each gradient by one adjoint solve
    per_cell = heat_1d(n, diffusivity="per_cell")
    solver = ka.AdjointSolver(per_cell.problem, preconditioner="ilu", rtol=1e-10)
    taylor = ka.verify.taylor_test_solver(
        ka.AdjointSolver(per_cell.problem, preconditioner="ilu", rtol=1e-13), per_cell.theta,
        rng=0)
    print(taylor.summary())

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        out = solver.gradient(theta)
        return out.objective, out.gradient

    initial = solver.objective(per_cell.theta)
    history = [initial]

    def record(intermediate_result: OptimizeResult) -> None:  # scipy's name, new style
        history.append(float(intermediate_result.fun))

    fit = minimize(fun, per_cell.theta, jac=True, method="L-BFGS-B",
                   options={"maxiter": 30 if args.quick else 200}, callback=record)
    print(f"per-cell κ (P = {per_cell.n_params}): misfit {initial:.3e} -> {fit.fun:.3e} in "
          f"{fit.nit} L-BFGS-B iterations")
    plot(per_cell.theta_true, per_cell.theta, fit.x, history, args.out)
    summary = {
        "example": "heat_1d_diffusivity",
        "taylor_rate": float(taylor.min_rate),
        "initial_objective": float(initial),
        "final_objective": float(fit.fun),
        "iterations": int(fit.nit),
        "seconds": time.perf_counter() - start,
        "gradient_vs_central_difference": float(abs(result.gradient[0] - finite_difference)
                                                / abs(finite_difference)),
        "relative_error": float(np.linalg.norm(fit.x - per_cell.theta_true)
                                / np.linalg.norm(per_cell.theta_true)),
        "figure": _common.shown_path(args.out),
    }
    return _common.print_summary(summary)


def plot(truth: np.ndarray, start: np.ndarray, fitted: np.ndarray, history: list[float],
         out: str) -> None:
    """The fitted log-diffusivity per cell against the truth and the start; the misfit."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    midpoints = (np.arange(truth.size) + 0.5) / truth.size
    axes[0].plot(midpoints, start, ".", ms=2, color="0.6", label="start θ₀")
    axes[0].plot(midpoints, truth, "-", lw=2, color="tab:blue", label="truth log κ★")
    axes[0].plot(midpoints, fitted, "--", lw=1.5, color="tab:red", label="fitted log κ")
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("log κ per cell")
    axes[0].legend(loc="best", fontsize=8)
    axes[0].grid(True, alpha=0.3)
    _common.plot_history(axes[1], history, "misfit ½‖u¹ − u¹★‖²")
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main()

"""Helmholtz inversion: recover a wave-speed map from complex boundary data at one frequency.

The model is the 2-D Helmholtz equation ``−Δu − ω² e^θ u = f`` with an impedance boundary
``∂u/∂n = iωu`` (:func:`krylov_adjoint.gallery.helmholtz_2d`): θ is the log of the squared
slowness per cell (P = N), the truth θ★ a slow inclusion, the source a narrow pulse, and the
data the complex field on the boundary cells, with complex Gaussian noise. At the default
frequency ω = 12 the operator is indefinite and complex symmetric. The objective is

    J(θ) = ½ Σ_boundary |u(θ) − d|² / σ² + (α/2) ‖D θ‖²,

and every gradient is one complex GMRES solve with A and one with Aᴴ (the adjoint
``Aᴴλ = ∂J/∂ū``, the gradient the real part of ``−λᴴ(∂A/∂θ)u``: docs/method.md), both
preconditioned by the same sparse LU factorisation (the adjoint with ``trans="H"``). The
gradient is checked by a Taylor test before L-BFGS-B minimises J from θ = 0 (the background).

Run: ``python examples/helmholtz_inversion.py [--n 48] [--omega 12] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.optimize import Bounds

import krylov_adjoint as ka
from krylov_adjoint.adapters import minimize
from krylov_adjoint.gallery import helmholtz_2d
from krylov_adjoint.gallery.helmholtz import boundary_misfit


def difference_operator(n: int) -> sp.csr_matrix:
    """Forward differences between neighbouring cells of an n × n grid, stacked."""
    step = sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n))
    identity = sp.identity(n)
    return sp.vstack([sp.kron(step, identity), sp.kron(identity, step)]).tocsr()


def noisy_problem(model: Any, noise: float, alpha: float, seed: int
                  ) -> tuple[ka.AdjointProblem, dict[str, Any]]:
    """The model's operator and source with noisy boundary data and a smoothness term."""
    clean = model.problem
    n = model.grid[0]
    boundary = np.zeros(model.grid, dtype=bool)
    boundary[[0, -1], :] = boundary[:, [0, -1]] = True
    observed = np.flatnonzero(boundary)
    u_true = spla.spsolve(clean.assemble(model.theta_true).tocsc(), clean.b(model.theta_true))
    d = u_true[observed]
    sigma = noise * float(np.max(np.abs(d)))
    rng = np.random.default_rng(seed)
    data = d + sigma * (rng.standard_normal(d.size) + 1j * rng.standard_normal(d.size))
    misfit = scaled(boundary_misfit(observed, data, model.n), sigma**-2)
    regulariser = ka.Tikhonov(alpha, L=difference_operator(n))
    problem = ka.AdjointProblem(clean.operator, clean.rhs, misfit + regulariser,
                                n_params=model.n_params)
    return problem, {"misfit": misfit, "observations": int(observed.size), "sigma": sigma}


def scaled(objective: ka.Objective, factor: float) -> ka.Objective:
    """``factor · J`` (with its derivative)."""
    return ka.Objective(J=lambda th, x: factor * objective.value(x, th),
                        dJ_dx=lambda th, x: factor * objective.grad_x(x, th))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="cells per side (default 48)")
    parser.add_argument("--omega", type=float, default=12.0, help="angular frequency")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="noise standard deviation, relative to max |data|")
    parser.add_argument("--alpha", type=float, default=10.0, help="regularisation weight")
    parser.add_argument("--maxiter", type=int, default=80, help="L-BFGS-B iterations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, "truth, recovery and objective history "
                                     "(app_helmholtz_inversion.png)")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 20 if args.quick else 48
    if args.quick:
        args.maxiter = min(args.maxiter, 20)
    args.out = str(_common.figure_path(args.out, "app_helmholtz_inversion.png"))
    clock = _common.Stopwatch()
    model = helmholtz_2d(args.n, omega=args.omega)
    problem, parts = noisy_problem(model, args.noise, args.alpha, args.seed)
    theta_true = np.asarray(model.theta_true)
    theta0 = np.zeros(model.n_params)
    clock.lap("set-up")

    # 1. The gradient (complex solves, real θ) by a Taylor test near the start.
    checker = ka.AdjointSolver(problem, method="gmres", preconditioner="lu", rtol=1e-12)
    rough = theta0 + 0.05 * np.random.default_rng(1).standard_normal(model.n_params)
    taylor = ka.verify.taylor_test_solver(checker, rough, rng=0)
    print(taylor.summary())
    clock.lap("taylor")

    # 2. L-BFGS-B: one factorisation, one primal and one adjoint GMRES solve per new θ.
    solver = ka.AdjointSolver(problem, method="gmres", preconditioner="lu", rtol=1e-10)
    initial = solver.gradient(theta0)
    fit = minimize(solver, theta0, method="L-BFGS-B", bounds=Bounds(-1.0, 2.0),
                   options={"maxiter": args.maxiter, "ftol": 1e-12, "gtol": 1e-8})
    clock.lap("optimisation")
    last = fit.objective.last
    theta = fit.x
    history = [initial.objective] + [h["objective"] for h in fit.history]
    plot(model.grid, theta_true, theta, history, args.out)
    inside = theta_true > 0.05 * theta_true.max()
    return _common.print_summary({
        "example": "helmholtz_inversion",
        "grid": list(model.grid), "N": model.n, "P": model.n_params, "omega": args.omega,
        "observations": parts["observations"], "noise": args.noise, "alpha": args.alpha,
        "taylor_rate": taylor.min_rate,
        "taylor_passed": bool(taylor.passed),
        "initial_objective": initial.objective,
        "final_objective": float(fit.fun),
        "final_data_misfit": parts["misfit"].value(last.x, theta),
        "inclusion_mean_true": float(theta_true[inside].mean()),
        "inclusion_mean_recovered": float(theta[inside].mean()),
        "iterations": int(fit.nit),
        "gradient_evaluations": int(fit.n_solves) + 1,
        "primal_iterations": last.primal.iterations,
        "adjoint_iterations": last.adjoint_solve.iterations,
        "message": str(fit.message),
        "seconds": clock.elapsed,
        "seconds_taylor": clock.laps["taylor"],
        "seconds_optimisation": clock.laps["optimisation"],
        "figure": _common.shown_path(args.out),
    })


def plot(grid: tuple[int, ...], truth: np.ndarray, recovered: np.ndarray,
         history: list[float], out: str) -> None:
    """Truth, recovery and the objective history."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    lo, hi = float(truth.min()), float(truth.max())
    for ax, values, title in ((axes[0], truth, "true log squared slowness θ★"),
                              (axes[1], recovered, "recovered θ")):
        image = ax.imshow(values.reshape(grid).T, origin="lower", extent=(0, 1, 0, 1),
                          cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[:2], shrink=0.85)
    _common.plot_history(axes[2], history, "J = misfit + regulariser")
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main()

"""Inverse conductivity: recover a per-cell log-conductivity from noisy point observations.

The model is steady diffusion ``−∇·(e^θ ∇u) = f`` on the unit square (or cube with ``--3d``),
θ one log-conductivity per cell (P = N), from
:func:`krylov_adjoint.gallery.diffusion_2d` / :func:`~krylov_adjoint.gallery.diffusion_3d`:
its synthetic truth θ★ has a conductive and a resistive inclusion, and the state is observed
at a lattice of points. Gaussian noise is added to the observations and the objective is

    J(θ) = ½ Σ_i (O u(θ) − d)_i² / σ² + (α/2) ‖D θ‖²,

a noise-weighted misfit plus a smoothness (Tikhonov) term, D the cell-to-cell differences.
L-BFGS-B minimises J from θ = 0 through :func:`krylov_adjoint.adapters.minimize`; each new θ
costs one CG solve and one adjoint CG solve, both preconditioned by the same smoothed-aggregation
AMG, which is set up once and reused across iterations until the CG iterations grow. Before
optimising, the gradient is checked by a Taylor test on the same problem.

Run: ``python examples/inverse_conductivity.py [--n 256] [--3d] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds

import krylov_adjoint as ka
from krylov_adjoint.adapters import minimize
from krylov_adjoint.gallery import diffusion_2d, diffusion_3d


def difference_operator(shape: tuple[int, ...]) -> sp.csr_matrix:
    """Forward differences between neighbouring cells along every axis, stacked.

    ``‖D θ‖² = Σ (θ_c' − θ_c)²`` over the faces between cells; times ``h^(d−2)`` it is the
    discrete ``∫ |∇θ|²``.
    """
    blocks = []
    for axis, n in enumerate(shape):
        step = sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n))
        factors = [step if a == axis else sp.identity(m) for a, m in enumerate(shape)]
        block = factors[0]
        for factor in factors[1:]:
            block = sp.kron(block, factor)
        blocks.append(block)
    return sp.vstack(blocks).tocsr()


def noisy_problem(model: Any, noise: float, alpha: float, seed: int
                  ) -> tuple[ka.AdjointProblem, dict[str, Any]]:
    """The model's operator and source, with noisy data and a smoothness regulariser.

    Parameters
    ----------
    model : ModelProblem
        From :func:`~krylov_adjoint.gallery.diffusion_2d` or ``diffusion_3d`` with its default
        (noise-free) objective, whose observation operator and data are reused.
    noise : float
        Noise standard deviation relative to the largest observation.
    alpha : float
        Weight of ``½‖Dθ‖²`` (times ``h`` in 3D, so that it approximates ``∫|∇θ|²``).
    seed : int
        Seed of the noise.

    Returns
    -------
    problem : AdjointProblem
    parts : dict
        ``misfit``, ``regulariser``, ``sigma``, ``observations`` (their number) and ``O``.
    """
    clean = model.problem.objective
    O, d = clean.O, np.asarray(clean.d)
    sigma = noise * float(np.max(np.abs(d)))
    data = d + sigma * np.random.default_rng(seed).standard_normal(d.size)
    misfit = ka.LeastSquaresMisfit(O, data, weights=np.full(d.size, sigma**-2))
    h = 1.0 / max(model.grid)
    scale = h ** ((len(model.grid) - 2) / 2)
    D = difference_operator(model.grid)
    regulariser = ka.Tikhonov(alpha, L=scale * D)
    problem = ka.AdjointProblem(model.problem.operator, model.problem.rhs,
                                misfit + regulariser, n_params=model.n_params)
    return problem, {"misfit": misfit, "regulariser": regulariser, "sigma": sigma,
                     "observations": int(d.size), "O": O}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None,
                        help="cells per side (default 256 in 2D, 40 in 3D)")
    parser.add_argument("--3d", dest="three_d", action="store_true", help="the unit cube")
    parser.add_argument("--observe-every", type=int, default=4,
                        help="a sensor every this many cells along each axis")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="noise standard deviation, relative to max |data|")
    parser.add_argument("--alpha", type=float, default=None,
                        help="regularisation weight (default 300 in 2D, 500 in 3D)")
    parser.add_argument("--maxiter", type=int, default=120, help="L-BFGS-B iterations")
    parser.add_argument("--rtol", type=float, default=1e-10,
                        help="solves during the fit (tight: L-BFGS-B's line search compares "
                             "nearby J values)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, "truth, recovery and misfit history "
                                     "(app_inverse_conductivity[_3d].png)")
    parser.add_argument("--verbose", action="store_true", help="log every evaluation")
    args = parser.parse_args(argv)
    dim = 3 if args.three_d else 2
    if args.n is None:
        args.n = (12 if dim == 3 else 32) if args.quick else (40 if dim == 3 else 256)
    if args.quick:
        args.maxiter = min(args.maxiter, 25)
    if args.alpha is None:
        args.alpha = 500.0 if dim == 3 else 300.0
    suffix = "_3d" if dim == 3 else ""
    args.out = str(_common.figure_path(args.out, f"app_inverse_conductivity{suffix}.png"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    clock = _common.Stopwatch()
    model = diffusion_3d(args.n, observe_every=args.observe_every) if dim == 3 \
        else diffusion_2d(args.n, observe_every=args.observe_every)
    problem, parts = noisy_problem(model, args.noise, args.alpha, args.seed)
    theta_true = np.asarray(model.theta_true)
    theta0 = np.zeros(model.n_params)
    clock.lap("set-up")

    # 1. The gradient of the full objective (misfit + regulariser), by a Taylor test at a
    #    rough point near the start (random cell values), with tight solves.
    checker = ka.AdjointSolver(problem, method="cg", preconditioner="amg", rtol=1e-11)
    rough = theta0 + 0.1 * np.random.default_rng(1).standard_normal(model.n_params)
    taylor = ka.verify.taylor_test_solver(checker, rough, rng=0)
    print(taylor.summary())
    clock.lap("taylor")

    # 2. L-BFGS-B, one primal and one adjoint solve per new θ, AMG reused across θ.
    solver = ka.AdjointSolver(problem, method="cg", preconditioner="amg", rtol=args.rtol)
    initial = solver.gradient(theta0)
    fit = minimize(solver, theta0, method="L-BFGS-B", bounds=Bounds(-5.0, 5.0),
                   options={"maxiter": args.maxiter, "ftol": 1e-10, "gtol": 1e-8})
    clock.lap("optimisation")
    last = fit.objective.last
    theta = fit.x
    misfit = [initial.objective] + [h["objective"] for h in fit.history]
    x = last.x
    data_misfit = parts["misfit"].value(x, theta)
    plot(model.grid, theta_true, theta, misfit, parts["O"], args.out)
    error = float(np.linalg.norm(theta - theta_true) / np.linalg.norm(theta_true))
    return _common.print_summary({
        "example": "inverse_conductivity",
        "dim": dim,
        "grid": list(model.grid), "N": model.n, "P": model.n_params,
        "observations": parts["observations"],
        "noise": args.noise, "alpha": args.alpha,
        "taylor_rate": taylor.min_rate,
        "taylor_passed": bool(taylor.passed),
        "initial_objective": initial.objective,
        "final_objective": float(fit.fun),
        "final_data_misfit": data_misfit,
        "noise_level_misfit": 0.5 * parts["observations"],
        "relative_error": error,
        "iterations": int(fit.nit),
        "gradient_evaluations": int(fit.n_solves) + 1,
        "primal_iterations": last.primal.iterations,
        "adjoint_iterations": last.adjoint_solve.iterations,
        "preconditioner_setups": solver.setups,
        "message": str(fit.message),
        "seconds": clock.elapsed,
        "seconds_taylor": clock.laps["taylor"],
        "seconds_optimisation": clock.laps["optimisation"],
        "figure": _common.shown_path(args.out),
    })


def plot(grid: tuple[int, ...], truth: np.ndarray, recovered: np.ndarray,
         history: list[float], O: sp.csr_matrix, out: str) -> None:
    """Truth and recovery (mid-plane slice in 3D), sensors, and the objective history."""
    plt = _common.pyplot()

    def plane(values: np.ndarray) -> np.ndarray:
        field = values.reshape(grid)
        return field if len(grid) == 2 else field[:, :, grid[2] // 2]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    lo, hi = float(truth.min()), float(truth.max())
    extent = (0.0, 1.0, 0.0, 1.0)
    for ax, values, title in ((axes[0], truth, "true log-conductivity θ★"),
                              (axes[1], recovered, "recovered θ")):
        image = ax.imshow(plane(values).T, origin="lower", extent=extent, cmap="RdBu_r",
                          vmin=lo, vmax=hi)
        ax.set_title(title if len(grid) == 2 else f"{title}, slice z = ½")
        ax.set_xticks([])
        ax.set_yticks([])
    sensors = np.unravel_index(O.indices, grid)
    if len(grid) == 2:
        axes[0].plot((sensors[0] + 0.5) / grid[0], (sensors[1] + 0.5) / grid[1], ",",
                     color="k", alpha=0.35)
    fig.colorbar(image, ax=axes[:2], shrink=0.85)
    _common.plot_history(axes[2], history, "J = misfit + regulariser")
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main()

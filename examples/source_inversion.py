"""Source inversion in convection-dominated transport, with GMRES and transposed AIR.

Steady convection–diffusion ``−∇·(κ∇u) + w·∇u = f`` on the unit square, a solid-body rotation
w and Péclet number 500 (upwind finite volumes, a nonsymmetric M-matrix), from
:func:`krylov_adjoint.gallery.convection_diffusion_2d` with ``parameters="source"``: θ = f,
one source value per cell (P = N). A true source made of two plumes is transported by the
flow, the concentration is observed at a lattice of sensors with noise, and L-BFGS-B recovers
f ≥ 0 by minimising

    J(f) = ½ Σ_i (O u(f) − d)_i² / σ² + (α/2) ‖D f‖²,

D the differences between neighbouring cells (a discrete ∫|∇f|²).

Every gradient costs one GMRES solve with A and one with Aᵀ; both are preconditioned by the
same AIR algebraic multigrid (set up once: A does not depend on f), applied as M in the primal
solve and as its exact transpose Mᵀ in the adjoint one. For one gradient, the adjoint solve is
also run with M in place of Mᵀ, the shortcut a preconditioner without a transpose forces, to
show what the exact transpose saves.

Run: ``python examples/source_inversion.py [--n 256] [--peclet 500] [--quick] [--out DIR]``.
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
from krylov_adjoint.gallery import convection_diffusion_2d
from krylov_adjoint.precond import AMGPreconditioner


class PrimalOnlyPreconditioner:
    """A preconditioner whose "transpose" is the preconditioner itself: ``Mᵀ r := M r``.

    The shortcut taken when only ``M`` can be applied (e.g. pyamg's ``aspreconditioner()``,
    which has no ``rmatvec``). The adjoint solve still converges to the right λ, as any
    nonsingular preconditioner would let it, but M approximates A⁻¹, not A⁻ᵀ.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.shape = inner.shape

    def apply(self, r: np.ndarray) -> np.ndarray:
        """``M r``."""
        return self.inner.apply(r)

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        """``M r`` again, not ``Mᵀ r``."""
        return self.inner.apply(r)


def plume_source(grid: tuple[int, int]) -> np.ndarray:
    """Two Gaussian plumes, flat in the gallery's cell order (axis 0 along x)."""
    x = (np.arange(grid[0]) + 0.5)[:, None] / grid[0]
    y = (np.arange(grid[1]) + 0.5)[None, :] / grid[1]
    first = np.exp(-((x - 0.3) ** 2 + (y - 0.65) ** 2) / (2 * 0.05**2))
    second = 0.6 * np.exp(-((x - 0.7) ** 2 + (y - 0.3) ** 2) / (2 * 0.08**2))
    return (first + second).reshape(-1)


def sensors(grid: tuple[int, int], every: int) -> sp.csr_matrix:
    """Point observations of every ``every``-th cell along each axis (a lattice of sensors)."""
    cells = np.arange(grid[0] * grid[1]).reshape(grid)
    picked = cells[every // 2::every, every // 2::every].reshape(-1)
    return sp.csr_matrix((np.ones(picked.size), (np.arange(picked.size), picked)),
                         shape=(picked.size, cells.size))


def differences(grid: tuple[int, int]) -> sp.csr_matrix:
    """Differences between neighbouring cells along x and y, stacked: ``‖Df‖² ≈ ∫|∇f|²``."""
    blocks = []
    for axis in range(2):
        n = grid[axis]
        step = sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n))
        other = sp.identity(grid[1 - axis])
        blocks.append(sp.kron(step, other) if axis == 0 else sp.kron(other, step))
    return sp.vstack(blocks).tocsr()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="cells per side (N = P = n²)")
    parser.add_argument("--peclet", type=float, default=500.0, help="Péclet number (≥ 100)")
    parser.add_argument("--observe-every", type=int, default=4,
                        help="a sensor every this many cells along each axis")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="noise standard deviation, relative to max |data|")
    parser.add_argument("--alpha", type=float, default=100.0, help="smoothness weight")
    parser.add_argument("--amg", choices=("air", "sa"), default="air",
                        help="AIR, or nonsymmetric smoothed aggregation")
    parser.add_argument("--maxiter", type=int, default=100, help="L-BFGS-B iterations")
    parser.add_argument("--rtol", type=float, default=1e-8, help="solves during the fit")
    parser.add_argument("--compare-maxiter", type=int, default=300,
                        help="iteration cap of the adjoint solve preconditioned by M, not Mᵀ")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, "the true and recovered sources "
                                     "(app_source_inversion.png)")
    parser.add_argument("--verbose", action="store_true", help="log every evaluation")
    args = parser.parse_args(argv)
    args.out = str(_common.figure_path(args.out, "app_source_inversion.png"))
    if args.quick:
        args.n, args.maxiter = 48, 30
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    clock = _common.Stopwatch()

    # The operator (fixed) and the θ = f layout from the gallery; our data and objective.
    model = convection_diffusion_2d(args.n, peclet=args.peclet, velocity="rotating",
                                    parameters="source")
    grid = model.grid
    operator, rhs = model.problem.operator, model.problem.rhs
    A = model.problem.assemble(np.zeros(model.n_params))
    M = AMGPreconditioner(A, method=args.amg)
    f_true = plume_source(grid)
    forward = ka.AdjointSolver(model.problem, method="gmres", preconditioner=M, rtol=1e-12)
    u_true = forward.solve(f_true).x
    O = sensors(grid, args.observe_every)
    clean = O @ u_true
    sigma = args.noise * float(np.abs(clean).max())
    data = clean + sigma * np.random.default_rng(args.seed).standard_normal(clean.size)
    objective = (ka.LeastSquaresMisfit(O, data, weights=np.full(data.size, sigma**-2))
                 + ka.Tikhonov(args.alpha, L=differences(grid)))
    problem = ka.AdjointProblem(operator, rhs, objective, n_params=model.n_params)
    theta0 = np.zeros(model.n_params)
    clock.lap("set-up")

    # 1. The gradient, by a Taylor test on the same problem (GMRES, tight tolerance), at a
    #    random source.
    point = np.random.default_rng(1).random(model.n_params)
    checker = ka.AdjointSolver(problem, method="gmres", preconditioner=M, rtol=1e-10)
    taylor = ka.verify.taylor_test_solver(checker, point, rng=0)
    print(taylor.summary())
    clock.lap("taylor")

    # 2. One gradient with the exact Mᵀ in the adjoint solve, and one with M instead
    #    (from zero initial guesses, at the Taylor test's point; capped at --compare-maxiter).
    comparison = {}
    gradients = {}
    for label, precond in (("exact_transpose", M), ("primal_M", PrimalOnlyPreconditioner(M))):
        one = ka.AdjointSolver(problem, method="gmres", preconditioner=precond,
                               rtol=args.rtol, warm_start=False, raise_on_failure=False,
                               maxiter=args.compare_maxiter)
        result = one.gradient(point)
        gradients[label] = result.gradient
        comparison[label] = {"adjoint_iterations": result.adjoint_solve.iterations,
                             "adjoint_reason": result.adjoint_solve.reason.name,
                             "adjoint_seconds": result.times["adjoint"],
                             "primal_iterations": result.primal.iterations}
        print(f"adjoint with {label}: {result.adjoint_solve.iterations} GMRES iterations "
              f"({result.adjoint_solve.reason.name}, {result.times['adjoint']:.2f} s); "
              f"primal {result.primal.iterations}")
    agreement = float(np.linalg.norm(gradients["primal_M"] - gradients["exact_transpose"])
                      / np.linalg.norm(gradients["exact_transpose"]))
    clock.lap("comparison")

    # 3. L-BFGS-B for f ≥ 0, the same AIR hierarchy throughout.
    solver = ka.AdjointSolver(problem, method="gmres", preconditioner=M, rtol=args.rtol)
    initial = solver.objective(theta0)
    fit = minimize(solver, theta0, method="L-BFGS-B", bounds=Bounds(0.0, np.inf),
                   options={"maxiter": args.maxiter, "ftol": 1e-12, "gtol": 1e-8})
    clock.lap("optimisation")
    last = fit.objective.last
    history = [initial] + [h["objective"] for h in fit.history]
    f = fit.x
    plot(grid, f_true, f, O, history, args.out)
    error = float(np.linalg.norm(f - f_true) / np.linalg.norm(f_true))
    return _common.print_summary({
        "example": "source_inversion",
        "grid": list(grid), "N": model.n, "P": model.n_params, "peclet": args.peclet,
        "observations": int(O.shape[0]), "noise": args.noise, "alpha": args.alpha,
        "amg": M.describe(),
        "taylor_rate": taylor.min_rate,
        "taylor_passed": bool(taylor.passed),
        "adjoint_iterations_exact_transpose": comparison["exact_transpose"]["adjoint_iterations"],
        "adjoint_iterations_primal_M": comparison["primal_M"]["adjoint_iterations"],
        "adjoint_reason_primal_M": comparison["primal_M"]["adjoint_reason"],
        "adjoint_seconds_exact_transpose": comparison["exact_transpose"]["adjoint_seconds"],
        "adjoint_seconds_primal_M": comparison["primal_M"]["adjoint_seconds"],
        "gradient_difference_exact_vs_primal_M": agreement,
        "initial_objective": initial,
        "final_objective": float(fit.fun),
        "relative_error": error,
        "iterations": int(fit.nit),
        "gradient_evaluations": int(fit.n_solves),
        "primal_iterations": last.primal.iterations,
        "adjoint_iterations": last.adjoint_solve.iterations,
        "preconditioner_setups": 1,
        "message": str(fit.message),
        "seconds": clock.elapsed,
        "seconds_taylor": clock.laps["taylor"],
        "seconds_optimisation": clock.laps["optimisation"],
        "figure": _common.shown_path(args.out),
    })


def plot(grid: tuple[int, int], truth: np.ndarray, recovered: np.ndarray, O: sp.csr_matrix,
         history: list[float], out: str) -> None:
    """True and recovered sources with the sensors and the flow, and the objective history."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    top = float(truth.max())
    extent = (0.0, 1.0, 0.0, 1.0)
    for ax, values, title in ((axes[0], truth, "true source f★"),
                              (axes[1], recovered, "recovered source f")):
        image = ax.imshow(values.reshape(grid).T, origin="lower", extent=extent,
                          cmap="magma_r", vmin=0.0, vmax=top)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    sx, sy = np.unravel_index(O.indices, grid)
    axes[0].plot((sx + 0.5) / grid[0], (sy + 0.5) / grid[1], ",", color="tab:blue",
                 alpha=0.5)
    s = np.linspace(0.1, 0.9, 9)
    X, Y = np.meshgrid(s, s)
    axes[1].quiver(X, Y, -(Y - 0.5), X - 0.5, color="tab:blue", alpha=0.5, width=0.004)
    fig.colorbar(image, ax=axes[:2], shrink=0.85)
    _common.plot_history(axes[2], history, "J = misfit + regularisation")
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main()

"""Bayesian inverse conductivity: MAP point by Newton–CG and a low-rank Laplace posterior.

The problem of ``examples/inverse_conductivity.py`` (steady diffusion ``−∇·(e^θ ∇u) = f``
on the unit square, one log-conductivity per cell, noisy point observations), read as a
Bayesian inverse problem: the Gaussian prior ``N(0, R⁻¹)`` has the precision

    R = α (DᵀD + δ I),     δ = δ₀ h²,

D the cell-to-cell differences (so ``θᵀDᵀDθ ≈ ∫|∇θ|²``) and the small shift ``δ₀ h²``
(``≈ δ₀ ∫θ²``) making R invertible with a mesh-independent meaning. The negative log
posterior is

    J(θ) = ½ Σ_i (O u(θ) − d)_i² / σ² + ½ θᵀ R θ,

written as :class:`krylov_adjoint.Tikhonov` with ``L = [D; √δ I]``, which supplies R as its
second derivative. The steps:

1. the Hessian is checked: ``‖g(θ + h dθ) − g(θ) − h H dθ‖`` must fall like h² (and the
   gradient by the usual Taylor test);
2. the MAP point by :func:`krylov_adjoint.newton.newton_cg`, preconditioned by the prior
   (``R⁻¹`` from a sparse LU factorisation), Gauss–Newton first, to ``‖g‖/‖g₀‖ ≤ 10⁻⁶``;
3. the low-rank Laplace approximation ``N(θ_MAP, (H_GN + R)⁻¹)``: the k dominant pairs of
   ``H_GN v = μ R v`` by :func:`krylov_adjoint.uq.randomized_eigh` (each product of the
   misfit's Gauss–Newton Hessian two solves), the pointwise posterior standard deviation and
   a few posterior samples, by :class:`krylov_adjoint.uq.LaplacePosterior`.

Run: ``python examples/bayesian_inverse_conductivity.py [--n 128] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from inverse_conductivity import difference_operator, noisy_problem

import krylov_adjoint as ka
from krylov_adjoint.gallery import diffusion_2d
from krylov_adjoint.newton import newton_cg
from krylov_adjoint.uq import LaplacePosterior, columnwise, randomized_eigh

#: Up to this many parameters diag(R⁻¹) is computed exactly (14 s at 128², by unit-vector
#: solves); above, it is estimated from prior samples. Rademacher probing (LaplacePosterior's
#: default) is not used: R⁻¹ of this smoothness prior has large off-diagonal entries, and at
#: 128² its estimate with 200 probes was off by 4 times the variance itself (mean |error|
#: 0.027 against a mean variance 0.0069), while s samples give a relative error √(2/s).
EXACT_PRIOR_VARIANCE_MAX = 128 * 128


class GaussianPrior:
    """``N(0, R⁻¹)`` with ``R = α GᵀG``, ``G = [D; √δ I]``: R, R⁻¹ (sparse LU) and draws.

    A draw is ``R⁻¹ √α Gᵀ z`` with z standard normal (of G's row count): its covariance is
    ``R⁻¹ (α GᵀG) R⁻¹ = R⁻¹``, with no Cholesky factor needed.
    """

    def __init__(self, grid: tuple[int, ...], alpha: float, delta0: float) -> None:
        n_params = math.prod(grid)
        h = 1.0 / max(grid)
        self.alpha, self.delta = float(alpha), float(delta0) * h * h
        D = difference_operator(grid)
        self.G = sp.vstack([D, math.sqrt(self.delta) * sp.identity(n_params)]).tocsr()
        self.R = (self.alpha * (self.G.T @ self.G)).tocsc()
        self._lu = spla.splu(self.R)
        self.n = n_params

    def regulariser(self) -> ka.Tikhonov:
        """``½ θᵀRθ`` as an objective term (its second derivative is R)."""
        return ka.Tikhonov(self.alpha, L=self.G)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """R X, for a vector or a block of columns."""
        return self.R @ X

    def apply_inverse(self, X: np.ndarray) -> np.ndarray:
        """R⁻¹ X (the Newton–CG preconditioner, the prior covariance)."""
        return self._lu.solve(np.asarray(X, dtype=np.float64))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of ``N(0, R⁻¹)``."""
        z = rng.standard_normal(self.G.shape[0])
        return self.apply_inverse(math.sqrt(self.alpha) * (self.G.T @ z))

    def variance(self) -> np.ndarray:
        """``diag(R⁻¹)`` exactly, by solving for blocks of unit vectors (small grids)."""
        out = np.empty(self.n)
        for start in range(0, self.n, 512):
            stop = min(start + 512, self.n)
            E = np.zeros((self.n, stop - start))
            E[np.arange(start, stop), np.arange(stop - start)] = 1.0
            out[start:stop] = self.apply_inverse(E)[np.arange(start, stop),
                                                    np.arange(stop - start)]
        return out

    def sampled_variance(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """``diag(R⁻¹)`` estimated as the mean of ``x²`` over prior draws x (relative error
        about ``√(2/n_samples)``, whatever the correlations)."""
        total = np.zeros(self.n)
        for _ in range(n_samples):
            total += self.sample(rng) ** 2
        return total / n_samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None,
                        help="cells per side (default 128; 28 with --quick)")
    parser.add_argument("--observe-every", type=int, default=4,
                        help="a sensor every this many cells along each axis")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="noise standard deviation, relative to max |data|")
    parser.add_argument("--alpha", type=float, default=300.0, help="prior weight α")
    parser.add_argument("--delta0", type=float, default=1.0,
                        help="the shift δ = δ₀h² of R = α(DᵀD + δI)")
    parser.add_argument("--k", type=int, default=None,
                        help="eigenpairs of the Laplace approximation (default 60; 30 with "
                             "--quick)")
    parser.add_argument("--samples", type=int, default=3, help="posterior samples drawn")
    parser.add_argument("--prior-samples", type=int, default=200,
                        help="prior draws estimating diag(R⁻¹) on grids above "
                             f"{EXACT_PRIOR_VARIANCE_MAX} cells")
    parser.add_argument("--rtol", type=float, default=1e-10, help="tolerance of the solves")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, "truth, MAP, posterior std and eigenvalues "
                                     "(app_bayesian_inverse_conductivity.png)")
    parser.add_argument("--verbose", action="store_true", help="log every Newton iteration")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 28 if args.quick else 128
    if args.k is None:
        args.k = 30 if args.quick else 60
    args.out = str(_common.figure_path(args.out, "app_bayesian_inverse_conductivity.png"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    clock = _common.Stopwatch()
    model = diffusion_2d(args.n, observe_every=args.observe_every)
    _, parts = noisy_problem(model, args.noise, args.alpha, args.seed)
    prior = GaussianPrior(model.grid, args.alpha, args.delta0)
    misfit = parts["misfit"]
    problem = ka.AdjointProblem(model.problem.operator, model.problem.rhs,
                                misfit + prior.regulariser(), n_params=model.n_params)
    theta_true = np.asarray(model.theta_true)
    theta0 = np.zeros(model.n_params)
    solver = ka.AdjointSolver(problem, method="cg", preconditioner="amg", rtol=args.rtol)
    clock.lap("set-up")

    # 1. Derivatives first, at a rough point: the gradient by a Taylor test (rate 2), the
    #    Hessian action by the remainders of the gradient (rate 2) and of J to third order.
    rng = np.random.default_rng(1)
    rough = theta0 + 0.1 * rng.standard_normal(model.n_params)
    taylor = ka.verify.taylor_test_solver(solver, rough, rng=0)
    print(taylor.summary())
    check = ka.verify.hessian_gradient_test(solver, rough, rng=0)
    print(check.summary())
    third = ka.verify.second_order_taylor_test(solver, rough, rng=0)
    print(third.summary())
    clock.lap("checks")

    # 2. The MAP point: Newton–CG preconditioned by the prior covariance R⁻¹.
    initial = solver.gradient(theta0)
    fit = newton_cg(solver, theta0, prior=prior, gtol=1e-6, gauss_newton_iterations=3,
                    maxiter=40)
    print(fit.summary())
    theta_map = fit.theta
    clock.lap("map")

    # 3. The Laplace approximation at the MAP point: H_GN v = μ R v. The solver's
    #    Gauss–Newton action is that of J, prior included: R v is taken off again.
    solver.gradient(theta_map)

    def misfit_gauss_newton(v: np.ndarray) -> np.ndarray:
        return solver.gauss_newton_vector_product(theta_map, v).product - prior.apply(v)

    pairs = randomized_eigh(columnwise(misfit_gauss_newton), prior.apply, prior.apply_inverse,
                            args.k, n_local=model.n_params, rng=2)
    clock.lap("eigenpairs")
    exact = model.n_params <= EXACT_PRIOR_VARIANCE_MAX
    prior_variance = prior.variance() if exact else prior.sampled_variance(
        args.prior_samples, np.random.default_rng(3))
    posterior = LaplacePosterior.from_eigh(theta_map, pairs, prior.apply_inverse,
                                           apply_R=prior.apply, prior_variance=prior_variance,
                                           prior_sample=prior.sample)
    std = np.sqrt(np.maximum(posterior.pointwise_variance(), 0.0))
    prior_std = np.sqrt(prior_variance)
    samples = posterior.sample(rng=4, n=args.samples)
    clock.lap("posterior")

    above = int(np.sum(pairs.eigenvalues > 1.0))
    if above == pairs.k:
        print(f"all {pairs.k} eigenvalues exceed 1: more directions are informed by the "
              "data than k holds (ask for a larger --k)")
    error = float(np.linalg.norm(theta_map - theta_true) / np.linalg.norm(theta_true))
    covered = float(np.mean(np.abs(theta_map - theta_true) <= 2.0 * std))
    plot(model.grid, theta_true, theta_map, std, pairs.eigenvalues, parts["O"], args.out)
    return _common.print_summary({
        "example": "bayesian_inverse_conductivity",
        "grid": list(model.grid), "P": model.n_params,
        "observations": parts["observations"],
        "noise": args.noise, "alpha": args.alpha, "delta": prior.delta,
        "taylor_rate": taylor.min_rate,
        "taylor_passed": bool(taylor.passed),
        "hessian_check_min_rate": check.min_rate,
        "hessian_check_passed": bool(check.passed),
        "hessian_taylor_min_rate": third.min_rate,
        "hessian_taylor_passed": bool(third.passed),
        "initial_objective": initial.objective,
        "final_objective": float(fit.objective),
        "final_data_misfit": misfit.value(solver.gradient(theta_map).x, theta_map),
        "noise_level_misfit": 0.5 * parts["observations"],
        "gradient_reduction": fit.gradient_norm / fit.initial_gradient_norm,
        "converged": bool(fit.converged),
        "iterations": fit.iterations,
        "newton_solves": fit.solves,
        "cg_iterations": fit.cg_iterations,
        "relative_error": error,
        "k": pairs.k,
        "eigenvalues_above_one": above,
        "largest_eigenvalues": pairs.eigenvalues[:5].tolist(),
        "smallest_eigenvalue": float(pairs.eigenvalues[-1]),
        "eigen_max_residual": pairs.max_residual,
        "eigen_hessian_actions": pairs.n_apply_H,
        "prior_variance": "exact" if exact else f"{args.prior_samples} prior samples",
        "mean_posterior_std": float(std.mean()),
        "mean_prior_std": float(prior_std.mean()),
        "truth_within_2std": covered,
        "samples": int(samples.shape[1]),
        "seconds": clock.elapsed,
        "seconds_checks": clock.laps["checks"],
        "seconds_map": clock.laps["map"],
        "seconds_eigenpairs": clock.laps["eigenpairs"],
        "seconds_posterior": clock.laps["posterior"],
        "figure": _common.shown_path(args.out),
    })


def plot(grid: tuple[int, ...], truth: np.ndarray, theta_map: np.ndarray, std: np.ndarray,
         eigenvalues: np.ndarray, O: sp.csr_matrix | None, out: Any, *,
         std_title: str = "posterior standard deviation",
         eigen_title: str = "eigenvalues of H_GN v = μ R v") -> None:
    """Truth, MAP point, posterior standard deviation (sensors shown when ``O`` is given
    and has at most 400 rows) and the eigenvalue decay."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    lo, hi = float(truth.min()), float(truth.max())
    extent = (0.0, 1.0, 0.0, 1.0)
    for ax, values, title, cmap, limits in (
            (axes[0], truth, "true log-conductivity θ★", "RdBu_r", (lo, hi)),
            (axes[1], theta_map, "MAP estimate θ_MAP", "RdBu_r", (lo, hi)),
            (axes[2], std, std_title, "viridis",
             tuple(np.percentile(std, [1.0, 99.0])))):
        image = ax.imshow(values.reshape(grid).T, origin="lower", extent=extent, cmap=cmap,
                          vmin=limits[0], vmax=limits[1])
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, shrink=0.85)
    if O is not None and O.shape[0] <= 400:  # the sensors, where they do not hide the field
        sensors = np.unravel_index(O.indices, grid)
        axes[2].plot((sensors[0] + 0.5) / grid[0], (sensors[1] + 0.5) / grid[1], ".",
                     color="w", markersize=2, alpha=0.6)
    index = np.arange(1, eigenvalues.size + 1)
    positive = eigenvalues > 0
    axes[3].semilogy(index[positive], eigenvalues[positive], "o-", markersize=3, lw=1.2,
                     label="μᵢ")
    axes[3].axhline(1.0, color="k", lw=1.0, ls="--", label="μ = 1")
    axes[3].set_xlabel("i")
    axes[3].set_title(eigen_title)
    axes[3].grid(True, which="both", alpha=0.3)
    axes[3].legend()
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main()

"""Bayesian inverse conductivity on PETSc/MPI: Newton–CG MAP point and a low-rank Laplace posterior.

    mpirun -n 2 python examples/mpi_bayesian_inversion.py             # 64 x 64 cells
    mpirun -n 2 python examples/mpi_bayesian_inversion.py --quick     # 20 x 20, a few seconds
    mpirun -n 4 python examples/mpi_bayesian_inversion.py --n 128 --out figures

The distributed twin of ``examples/bayesian_inverse_conductivity.py``: steady diffusion
``−∇·(e^θ ∇u) = f`` on the unit square (:func:`krylov_adjoint.backends.petsc.gallery.
diffusion_2d`, x and θ split over the ranks), one log-conductivity per cell, point
observations with Gaussian noise of standard deviation σ, and the prior ``N(0, R⁻¹)`` with
``R = α I``, which needs no distributed solve (``R⁻¹ = I/α``). The negative log posterior is

    J(θ) = ½ Σ_i (O u(θ) − d)_i² / σ² + ½ α ‖θ‖²,

each rank holding the misfit of the sensors in its cells and the Tikhonov term of its θ (the
ready-made objectives with this rank's data). The steps, every one collective:

1. the Hessian is checked by :func:`krylov_adjoint.verify.hessian_gradient_test`
   (``‖g(θ + h dθ) − g(θ) − h H dθ‖`` falls like h²);
2. the MAP point by :func:`krylov_adjoint.newton.newton_cg`, preconditioned by ``R⁻¹ = I/α``,
   with the global inner product ``comm.allreduce(a @ b)``;
3. the k dominant pairs of ``H_GN v = μ R v`` (H_GN the misfit's Gauss–Newton Hessian: the
   solver's Gauss–Newton action minus ``α v``) by :func:`krylov_adjoint.uq.randomized_eigh`
   with ``reduce_sum = comm.allreduce``, and the pointwise posterior variance
   ``1/α − Σᵢ dᵢ vᵢ²`` by :class:`krylov_adjoint.uq.LaplacePosterior`;
4. rank 0 gathers the MAP point and the posterior standard deviation, draws them with the
   eigenvalues (``app_mpi_bayesian_inversion.png``), and prints a JSON summary as the last line.

The data, the noise, the random probes and the check's direction are drawn as global arrays
(the same on every rank) and sliced, so the run gives the same MAP point and eigenvalues on
any number of ranks, up to the tolerance of the solves. PETSc options work on the command line,
e.g. ``-ka_primal_ksp_monitor`` or ``-log_view``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
from bayesian_inverse_conductivity import plot

import krylov_adjoint as ka
from krylov_adjoint.backends.petsc import PetscAdjointSolver, gallery
from krylov_adjoint.backends.petsc._import import mpi, petsc
from krylov_adjoint.backends.petsc.gallery import distribute_objective
from krylov_adjoint.backends.petsc.problem import DistributedProblem
from krylov_adjoint.newton import newton_cg
from krylov_adjoint.uq import LaplacePosterior, columnwise, randomized_eigh

FIGURE = "app_mpi_bayesian_inversion.png"


class IdentityPrior:
    """``N(0, R⁻¹)`` with ``R = α I``: R and R⁻¹ act on this rank's rows alone."""

    def __init__(self, alpha: float) -> None:
        self.alpha = float(alpha)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """R X, for a vector or a block of columns."""
        return self.alpha * np.asarray(X, dtype=np.float64)

    def apply_inverse(self, X: np.ndarray) -> np.ndarray:
        """R⁻¹ X = X/α (the Newton–CG preconditioner, the prior covariance)."""
        return np.asarray(X, dtype=np.float64) / self.alpha


def noisy_misfit(model: gallery.DistributedModel, noise: float, seed: int
                 ) -> tuple[ka.LeastSquaresMisfit, float, int]:
    """This rank's sensors of the model's misfit, with noisy data weighted by 1/σ².

    The noise is drawn for all sensors on every rank (the same stream) and then distributed,
    so each sensor's datum does not depend on the number of ranks.
    """
    clean = model.serial.problem.objective
    d = np.asarray(clean.d)
    sigma = noise * float(np.max(np.abs(d)))
    data = d + sigma * np.random.default_rng(seed).standard_normal(d.size)
    misfit = ka.LeastSquaresMisfit(clean.O, data, weights=np.full(d.size, sigma**-2))
    return distribute_objective(misfit, model.grid), sigma, int(d.size)


def local_columns(model: gallery.DistributedModel, block: np.ndarray) -> np.ndarray:
    """This rank's rows of a block of θ-like columns given in the serial ordering."""
    return np.stack([model.local_theta(block[:, j]) for j in range(block.shape[1])], axis=1)


def main(argv: list[str]) -> dict[str, Any] | None:
    """Run the example; rank 0 returns the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None,
                        help="cells per side (default 64; 20 with --quick)")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="noise standard deviation, relative to max |data|")
    parser.add_argument("--alpha", type=float, default=3.0,
                        help="prior precision α (R = αI, prior variance 1/α)")
    parser.add_argument("--k", type=int, default=None,
                        help="eigenpairs of the Laplace approximation (default 60; 30 with "
                             "--quick)")
    parser.add_argument("--rtol", type=float, default=1e-12,
                        help="tolerance of the solves (the gradient must be accurate below "
                             "gtol·|g0|: with 1e-10 Newton-CG stalled at |g|/|g0| ~ 1e-9)")
    parser.add_argument("--gtol", type=float, default=1e-8,
                        help="Newton-CG stops at |g|/|g0| <= gtol (tight: the eigenpairs are "
                             "taken at the MAP point, the same on any number of ranks)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, f"MAP, posterior std and eigenvalues ({FIGURE})")
    args, _petsc_options = parser.parse_known_args(argv)
    if args.n is None:
        args.n = 20 if args.quick else 64
    if args.k is None:
        args.k = 30 if args.quick else 60
    petsc()  # initialise PETSc with the command line's options
    comm = mpi().COMM_WORLD
    rank = comm.Get_rank()
    clock = _common.Stopwatch()

    def dot(a: np.ndarray, b: np.ndarray) -> float:
        return comm.allreduce(float(a @ b))

    def reduce_sum(local: np.ndarray) -> np.ndarray:
        return comm.allreduce(local)

    model = gallery.diffusion_2d(args.n, comm=comm)
    misfit, sigma, observations = noisy_misfit(model, args.noise, args.seed)
    prior = IdentityPrior(args.alpha)
    problem = DistributedProblem(model.problem.operator, model.problem.rhs,
                                 misfit + ka.Tikhonov(args.alpha),
                                 theta_layout=model.grid.layout)
    P = problem.n_params
    theta0 = np.zeros(model.theta.size)

    with PetscAdjointSolver(problem, rtol=args.rtol) as solver:
        clock.lap("set-up")
        # 1. The Hessian action against the gradient, at a rough point (rate 2).
        rng = np.random.default_rng(1)
        rough = model.local_theta(0.1 * rng.standard_normal(P))
        direction = model.local_theta(rng.standard_normal(P))
        check = ka.verify.hessian_gradient_test(solver, rough, direction=direction)
        if rank == 0:
            print(check.summary(), flush=True)
        clock.lap("check")

        # 2. The MAP point: Newton–CG preconditioned by R⁻¹ = I/α, global inner products.
        initial = solver.gradient(theta0).objective
        fit = newton_cg(solver, theta0, prior=prior, gtol=args.gtol, gauss_newton_iterations=3,
                        maxiter=40, dot=dot)
        if rank == 0:
            print(fit.summary(), flush=True)
        theta_map = np.array(fit.theta)
        clock.lap("map")

        # 3. H_GN v = μ R v at the MAP point. The solver's Gauss–Newton action is that of J,
        #    the prior's αv included: it is taken off again.
        def misfit_gauss_newton(v: np.ndarray) -> np.ndarray:
            product = solver.gauss_newton_vector_product(theta_map, v).product
            return np.asarray(product) - prior.apply(v)

        ell = min(args.k + 10, P)
        omega = local_columns(model, np.random.default_rng(2).standard_normal((P, ell)))
        pairs = randomized_eigh(columnwise(misfit_gauss_newton), prior.apply,
                                prior.apply_inverse, args.k, omega=omega,
                                reduce_sum=reduce_sum)
        clock.lap("eigenpairs")
        posterior = LaplacePosterior.from_eigh(
            theta_map, pairs, prior.apply_inverse, apply_R=prior.apply,
            prior_variance=np.full(theta_map.size, 1.0 / args.alpha), reduce_sum=reduce_sum)
        std = np.sqrt(np.maximum(posterior.pointwise_variance(), 0.0))
        data_misfit = solver.gradient(theta_map)
        data_misfit = comm.allreduce(misfit.value(np.asarray(data_misfit.x), theta_map))
        clock.lap("posterior")

    # 4. Rank 0 gathers the fields and draws them.
    full_map = model.gather_theta(theta_map, root=0)
    full_std = model.gather_theta(std, root=0)
    truth = model.serial.theta_true
    map_norm = float(np.sqrt(dot(theta_map, theta_map)))
    if rank != 0:
        return None
    out = _common.figure_path(args.out, FIGURE)
    plot(model.serial.grid, np.asarray(truth), full_map, full_std, pairs.eigenvalues, None,
         out, std_title=f"posterior std (prior {1.0 / np.sqrt(args.alpha):.3g})",
         eigen_title="eigenvalues of H_GN v = μ αv")
    above = int(np.sum(pairs.eigenvalues > 1.0))
    if above == pairs.k == args.k:  # (fewer pairs come back when H_GN's rank is below k)
        print(f"all {pairs.k} eigenvalues exceed 1: more directions are informed by the data "
              "than k holds (ask for a larger --k)", flush=True)
    summary = {
        "example": "mpi_bayesian_inversion",
        "ranks": comm.Get_size(),
        "grid": list(model.serial.grid), "P": P, "observations": observations,
        "noise": args.noise, "sigma": sigma, "alpha": args.alpha,
        "hessian_check_min_rate": check.min_rate,
        "hessian_check_passed": bool(check.passed),
        "initial_objective": initial,
        "final_objective": float(fit.objective),
        "final_data_misfit": float(data_misfit),
        "noise_level_misfit": 0.5 * observations,
        "gradient_reduction": fit.gradient_norm / fit.initial_gradient_norm,
        "converged": bool(fit.converged),
        "iterations": fit.iterations,
        "solves": fit.solves,
        "cg_iterations": fit.cg_iterations,
        "map_norm": map_norm,
        "relative_error": float(np.linalg.norm(full_map - truth) / np.linalg.norm(truth)),
        "k": pairs.k,
        "eigenvalues": [float(e) for e in pairs.eigenvalues],
        "eigenvalues_above_one": above,
        "eigen_max_residual": pairs.max_residual,
        "eigen_hessian_actions": pairs.n_apply_H,
        "mean_posterior_std": float(full_std.mean()),
        "prior_std": float(1.0 / np.sqrt(args.alpha)),
        "seconds": clock.elapsed,
        "seconds_check": clock.laps["check"],
        "seconds_map": clock.laps["map"],
        "seconds_eigenpairs": clock.laps["eigenpairs"],
        "figure": _common.shown_path(out),
    }
    # full precision (not print_summary's six digits): runs on 1 and 2 ranks are compared
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])

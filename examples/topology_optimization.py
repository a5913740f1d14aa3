"""Topology optimisation: SIMP compliance minimisation of a 2D elastic beam.

Plane-stress linear elasticity on a regular grid of bilinear quadrilaterals (Q4, E = 1,
ν = 0.3), one design variable per element, element stiffness ``s(ρ_e) K_e`` with the SIMP
law ``s(ρ) = ε + (1 − ε) ρ³`` and physical densities ``ρ = H θ`` from a linear density filter
(radius 1.5 elements). The compliance ``J = fᵀu`` is minimised under a volume constraint by
the optimality-criteria update; each iteration costs one gradient, i.e. one primal and one
adjoint conjugate-gradient solve preconditioned by smoothed-aggregation AMG built with the
three rigid-body modes as near-nullspace. Compliance is self-adjoint (``λ = u``): the run
reports how close the adjoint computed by the library is to the state, as a check. Before
optimising, the gradient is checked by a Taylor test on the full problem.

Run: ``python examples/topology_optimization.py [--nelx 450 --nely 225] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import _common  # first: it sets the BLAS threads before numpy loads
import numpy as np
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint.adapters import element_operator

LOGGER = logging.getLogger("topology_optimization")


def element_stiffness(nu: float = 0.3, young: float = 1.0) -> np.ndarray:
    """The 8 × 8 plane-stress stiffness of a unit square Q4 element (Sigmund's 88-line code).

    Dofs in the order of :func:`mesh`'s connectivity: ``[u₀, v₀, u₁, v₁, u₂, v₂, u₃, v₃]``
    for the lower-left, lower-right, upper-right and upper-left nodes.
    """
    k = np.array([1 / 2 - nu / 6, 1 / 8 + nu / 8, -1 / 4 - nu / 12, -1 / 8 + 3 * nu / 8,
                  -1 / 4 + nu / 12, -1 / 8 - nu / 8, nu / 6, 1 / 8 - 3 * nu / 8])
    order = np.array([[0, 1, 2, 3, 4, 5, 6, 7],
                      [1, 0, 7, 6, 5, 4, 3, 2],
                      [2, 7, 0, 5, 6, 3, 4, 1],
                      [3, 6, 5, 0, 7, 2, 1, 4],
                      [4, 5, 6, 7, 0, 1, 2, 3],
                      [5, 4, 3, 2, 1, 0, 7, 6],
                      [6, 3, 4, 1, 2, 7, 0, 5],
                      [7, 2, 1, 4, 3, 6, 5, 0]])
    return young / (1 - nu**2) * k[order]


def mesh(nelx: int, nely: int) -> tuple[np.ndarray, np.ndarray]:
    """Connectivity and node coordinates of an nelx × nely grid of unit squares.

    Nodes and elements are numbered column by column from the top-left corner, y pointing
    down (as in the 88-line code): element ``e = ely + elx·nely``, node ``(nely+1)·i + j``.

    Returns
    -------
    connectivity : ndarray of int, shape (E, 8)
        The two dofs ``(2 n, 2 n + 1)`` of each node, nodes in :func:`element_stiffness`'s
        order.
    coords : ndarray, shape (n_nodes, 2)
        Node coordinates (x to the right, y up).
    """
    elx, ely = np.meshgrid(np.arange(nelx), np.arange(nely), indexing="ij")
    n1 = ((nely + 1) * elx + ely).ravel()
    n2 = ((nely + 1) * (elx + 1) + ely).ravel()
    conn = np.stack([2 * n1 + 2, 2 * n1 + 3, 2 * n2 + 2, 2 * n2 + 3,
                     2 * n2, 2 * n2 + 1, 2 * n1, 2 * n1 + 1], axis=1)
    i, j = np.meshgrid(np.arange(nelx + 1), np.arange(nely + 1), indexing="ij")
    coords = np.stack([i.ravel(), -j.ravel()], axis=1).astype(np.float64)
    return conn, coords


def density_filter(nelx: int, nely: int, radius: float) -> sp.csr_matrix:
    """The linear density filter ``H`` (E × E), rows normalised: ``ρ_e = Σ_f H_ef θ_f``.

    Parameters
    ----------
    nelx, nely : int
        Elements along x and y.
    radius : float
        Filter radius in element widths; the weights are ``max(0, radius − dist(e, f))``
        between element centres.

    Returns
    -------
    scipy.sparse.csr_matrix
        Passed to :func:`~krylov_adjoint.adapters.element_operator` as ``parameter_map``.
    """
    reach = int(np.ceil(radius)) - 1
    elx, ely = np.meshgrid(np.arange(nelx), np.arange(nely), indexing="ij")
    elx, ely = elx.ravel(), ely.ravel()
    rows, cols, vals = [], [], []
    for dx in range(-reach, reach + 1):
        for dy in range(-reach, reach + 1):
            weight = radius - np.hypot(dx, dy)
            if weight <= 0:
                continue
            fx, fy = elx + dx, ely + dy
            inside = (fx >= 0) & (fx < nelx) & (fy >= 0) & (fy < nely)
            rows.append((ely + elx * nely)[inside])
            cols.append((fy + fx * nely)[inside])
            vals.append(np.full(int(inside.sum()), weight))
    n = nelx * nely
    H = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    return sp.csr_matrix(sp.diags(1.0 / np.asarray(H.sum(axis=1)).ravel()) @ H)


def supports_and_load(case: str, nelx: int, nely: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed dofs and load vector of the half MBB beam or the cantilever.

    ``"mbb"``: symmetry (u = 0) on the left edge, roller (v = 0) at the bottom-right corner,
    a unit downward load at the top-left corner. ``"cantilever"``: left edge clamped, a unit
    downward load at the middle of the right edge.
    """
    n_dofs = 2 * (nelx + 1) * (nely + 1)
    f = np.zeros(n_dofs)
    left = np.arange(nely + 1)
    if case == "mbb":
        fixed = np.union1d(2 * left, [n_dofs - 1])
        f[1] = -1.0
    elif case == "cantilever":
        fixed = np.union1d(2 * left, 2 * left + 1)
        f[2 * ((nely + 1) * nelx + nely // 2) + 1] = -1.0
    else:
        raise ValueError(f"unknown case {case!r}: expected 'mbb' or 'cantilever'")
    return fixed, f


def rigid_body_modes(coords: np.ndarray, free: np.ndarray) -> np.ndarray:
    """The three 2D rigid-body modes (two translations, one rotation), zero at fixed dofs."""
    n_nodes = coords.shape[0]
    centred = coords - coords.mean(axis=0)
    B = np.zeros((2 * n_nodes, 3))
    B[0::2, 0] = 1.0
    B[1::2, 1] = 1.0
    B[0::2, 2] = -centred[:, 1]
    B[1::2, 2] = centred[:, 0]
    B[~free] = 0.0
    return B


def optimality_criteria(theta: np.ndarray, dc: np.ndarray, dv: np.ndarray, H: sp.csr_matrix,
                        volume: float, move: float) -> np.ndarray:
    """One optimality-criteria update: bisection on the Lagrange multiplier of the volume.

    ``θ_new = clip(θ (−dc / (ℓ dv))^½, θ ± move, [0, 1])`` with ℓ such that the filtered
    densities ``Hθ_new`` fill the volume fraction ``volume``.

    Parameters
    ----------
    theta : ndarray (E,)
        The current design variables.
    dc, dv : ndarray (E,)
        Derivatives of the compliance and of the volume ``Σ Hθ`` with respect to θ.
    H : scipy.sparse matrix (E, E)
        The density filter.
    volume, move : float
        Volume fraction and move limit.

    Returns
    -------
    ndarray (E,)
        The new design.
    """
    ratio = np.maximum(-dc, 0.0) / dv
    target = volume * theta.size
    low, high = 0.0, 1e9 * max(float(ratio.max()), 1e-300)
    lower, upper = np.maximum(theta - move, 0.0), np.minimum(theta + move, 1.0)
    while (high - low) > 1e-4 * (high + low):
        mid = 0.5 * (low + high)
        new = np.clip(theta * np.sqrt(ratio / mid), lower, upper)
        if (H @ new).sum() > target:
            low = mid
        else:
            high = mid
    return new


def build(nelx: int, nely: int, case: str, radius: float, penalty: float, eps: float
          ) -> dict[str, Any]:
    """The operator, problem and AMG options of the compliance problem.

    Returns
    -------
    dict
        ``operator`` (the :class:`~krylov_adjoint.adapters.ElementOperator`), ``problem``,
        ``H`` (the filter), ``amg`` (``preconditioner_options``) and ``load``.
    """
    conn, coords = mesh(nelx, nely)
    n_dofs = 2 * coords.shape[0]
    fixed, f = supports_and_load(case, nelx, nely)
    H = density_filter(nelx, nely, radius)
    operator = element_operator(element_stiffness(), conn, n_dofs, scaling="simp",
                                simp_penalty=penalty, simp_eps=eps, dirichlet_dofs=fixed,
                                parameter_map=H, structure="spd")
    rhs = operator.dirichlet_rhs(f)
    problem = ka.AdjointProblem(operator, rhs, ka.LinearFunctional(rhs.value(None)),
                                n_params=nelx * nely)
    # Smoothed aggregation fitted to the rigid-body modes; the prolongation smoother uses
    # local (row-sum) weights instead of a spectral-radius estimate, and the candidates are
    # not pre-smoothed: both keep the set-up cheap enough to redo at every design update.
    amg = {"method": "sa", "near_nullspace": rigid_body_modes(coords, operator.free),
           "symmetric": True, "smooth": ("jacobi", {"weighting": "local"}),
           "improve_candidates": None}
    return {"operator": operator, "problem": problem, "H": H, "amg": amg, "load": f}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; return the summary printed as the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nelx", type=int, default=450, help="elements along x")
    parser.add_argument("--nely", type=int, default=225, help="elements along y")
    parser.add_argument("--case", choices=("mbb", "cantilever"), default="mbb")
    parser.add_argument("--volume", type=float, default=0.5, help="volume fraction")
    parser.add_argument("--radius", type=float, default=1.5, help="filter radius (elements)")
    parser.add_argument("--move", type=float, default=0.2, help="OC move limit")
    parser.add_argument("--iterations", type=int, default=25, help="maximum OC iterations")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="relative residual of the solves during the optimisation")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the AMG set-up across designs, rebuilding it only when "
                             "the CG iterations grow (default: a new set-up per design)")
    parser.add_argument("--eps", type=float, default=1e-9, help="SIMP stiffness floor")
    parser.add_argument("--quick", action="store_true", help="small and fast (tests)")
    _common.add_out_argument(parser, "the design and the compliance history (app_topology.png)")
    parser.add_argument("--verbose", action="store_true", help="one line per iteration")
    args = parser.parse_args(argv)
    args.out = str(_common.figure_path(args.out, "app_topology.png"))
    if args.quick:
        args.nelx, args.nely, args.iterations = 60, 30, 10
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    clock = _common.Stopwatch()
    penalty = 3.0
    setup = build(args.nelx, args.nely, args.case, args.radius, penalty, args.eps)
    problem, H = setup["problem"], setup["H"]
    E, N = problem.n_params, problem.n
    clock.lap("set-up")

    # 1. The gradient on the real problem, at the starting design, by a Taylor test.
    theta = np.full(E, args.volume)
    checker = ka.AdjointSolver(problem, method="cg", preconditioner="amg",
                               preconditioner_options=setup["amg"], rtol=1e-10)
    taylor = ka.verify.taylor_test_solver(checker, theta, rng=0)
    print(taylor.summary())
    clock.lap("taylor")

    # 2. Optimality criteria, one adjoint gradient per iteration.
    solver = ka.AdjointSolver(problem, method="cg", preconditioner="amg",
                              preconditioner_options=setup["amg"], rtol=args.rtol,
                              reuse_preconditioner=args.reuse)
    dv = np.asarray(H.T @ np.ones(E)).ravel()
    history: list[float] = []
    primal_its: list[int] = []
    change = 1.0
    for iteration in range(1, args.iterations + 1):
        result = solver.gradient(theta)
        history.append(result.objective)
        primal_its.append(result.primal.iterations)
        new = optimality_criteria(theta, result.gradient, dv, H, args.volume, args.move)
        change = float(np.max(np.abs(new - theta)))
        theta = new
        LOGGER.info("it %3d  J = %.6e  vol = %.4f  change = %.3f  CG %d/%d  %s", iteration,
                    result.objective, float((H @ theta).mean()), change,
                    result.primal.iterations, result.adjoint_solve.iterations,
                    result.preconditioner_note)
        if change < 0.01:
            break
    final = solver.gradient(theta)
    history.append(final.objective)
    clock.lap("optimisation")

    # Compliance is self-adjoint: K λ = f = K u, so λ = u up to the two solves' tolerance.
    adjoint_vs_state = float(np.linalg.norm(final.adjoint - final.x) / np.linalg.norm(final.x))
    rho = H @ theta
    plot(rho, args.nelx, args.nely, history, args.out)
    return _common.print_summary({
        "example": "topology_optimization",
        "case": args.case,
        "nelx": args.nelx, "nely": args.nely, "N": N, "P": E,
        "taylor_rate": taylor.min_rate,
        "taylor_passed": bool(taylor.passed),
        "initial_objective": history[0],
        "final_objective": final.objective,
        "iterations": len(history) - 1,
        "last_change": change,
        "volume": float(rho.mean()),
        "grey_fraction": float(np.mean((rho > 0.1) & (rho < 0.9))),
        "primal_iterations": final.primal.iterations,
        "adjoint_iterations": final.adjoint_solve.iterations,
        "primal_iterations_range": [min(primal_its), max(primal_its)],
        "preconditioner_setups": solver.setups,
        "adjoint_minus_state": adjoint_vs_state,
        "seconds": clock.elapsed,
        "seconds_taylor": clock.laps["taylor"],
        "seconds_optimisation": clock.laps["optimisation"],
        "figure": _common.shown_path(args.out),
    })


def plot(rho: np.ndarray, nelx: int, nely: int, history: list[float], out: str) -> None:
    """The final physical densities and the compliance history."""
    plt = _common.pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.6),
                                   gridspec_kw={"width_ratios": [2.2, 1]})
    ax0.imshow(rho.reshape(nelx, nely).T, cmap="gray_r", vmin=0, vmax=1,
               interpolation="nearest", aspect="equal")
    ax0.set_title(f"design ρ = Hθ, {nelx}×{nely} elements")
    ax0.set_axis_off()
    ax1.semilogy(np.arange(len(history)), history, "o-", ms=3)
    ax1.set_xlabel("optimality-criteria iteration")
    ax1.set_ylabel("compliance fᵀu")
    ax1.grid(True, which="both", alpha=0.3)
    _common.save_figure(fig, out)


if __name__ == "__main__":
    main()

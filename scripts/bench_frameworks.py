"""One ``value_and_grad`` through a sparse solve in JAX and PyTorch: this library against JAX's CG.

The problem: 2D cell-centred finite volumes, −∇·(e^θ ∇u) = f on the unit square with one
log-conductivity per cell (P = N, harmonic-mean face conductivities, the gallery's
:func:`~krylov_adjoint.gallery.diffusion_2d`), ``J = ½‖O u − d‖²`` over point observations
(every 4th cell along each axis). Timed per N, each a fresh solver (set-up included), CG at
``rtol = 1e-10``:

- ``ours_jax``: ``jax.value_and_grad`` through :func:`krylov_adjoint.jax.linear_solve`, the
  product written in JAX, AMG from ``values(θ)`` on the 5-point pattern (transposed cycle in
  the adjoint);
- ``ours_jax_assembled``: the same through :func:`krylov_adjoint.jax.assembled_solve`
  (products with the assembled matrix on the host);
- ``ours_torch``: ``backward()`` through :func:`krylov_adjoint.torch.linear_solve`, the
  product in torch, the same AMG;
- ``ours_native``: :meth:`krylov_adjoint.AdjointSolver.gradient` on the gallery's numpy
  callbacks (the reference the gradients are compared with);
- ``jax_cg``: ``jax.value_and_grad`` through ``jax.scipy.sparse.linalg.cg`` with a Jacobi
  preconditioner (JAX differentiates it implicitly), jitted, compile time excluded;
- ``lineax_cg``: ``lineax.linear_solve`` with ``lineax.CG`` and the same Jacobi
  preconditioner, when lineax is installed (at ``rtol = 1e-8``: at 1e-10 its stopping rule
  is not met within 200,000 steps on this problem); not with ``--quick``.

Each solver is made (and compiled) once, then each timed run is one ``value_and_grad`` at a
new θ with a new AMG set-up and no warm start (``reuse_preconditioner=False``,
``warm_start=False``): the cost of one step of an optimisation that sets up every step. Times
are medians over ``--repeats`` (JAX's CG once at N ≥ 2¹⁸, lineax only at N < 2¹⁸); ratios are
measured in the same run. OpenBLAS is asked for one thread (``OPENBLAS_NUM_THREADS=1``
unless set, before numpy loads). Usage::

    python scripts/bench_frameworks.py --quick              # N = 2¹⁶, under 90 s
    python scripts/bench_frameworks.py --json frameworks.json   # N = 2¹⁶ and 2²⁰
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402  (after the thread setting)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import krylov_adjoint as ka  # noqa: E402
import krylov_adjoint.jax as kj  # noqa: E402
import krylov_adjoint.torch as kt  # noqa: E402
from krylov_adjoint.gallery import diffusion_2d  # noqa: E402

jax.config.update("jax_enable_x64", True)
torch.set_num_threads(1)

RTOL = 1e-10
#: lineax's CG stops on its own rule (max norm of the residual); at 1e-10 it stalls short of
#: it on this problem and raises after max_steps, so it runs at 1e-8.
LINEAX_RTOL = 1e-8
TARGETS = {"speedup_vs_jax_cg": 20.0, "jax_over_native": 1.3, "max_rel_diff": 1e-8}


# -- the problem in each framework -------------------------------------------------------------
def jax_matvec(m: int) -> Callable[[Any, Any], Any]:
    """A(θ)x on the m × m grid in JAX (the gallery's scheme, h = 1/m)."""
    h2 = float(m * m)

    def matvec(theta: Any, x: Any) -> Any:
        k, u = jnp.exp(theta).reshape(m, m), x.reshape(m, m)
        out = 0.0
        for axis in (0, 1):
            kl, kr = (jax.lax.slice_in_dim(k, a, a + m - 1, axis=axis) for a in (0, 1))
            ul, ur = (jax.lax.slice_in_dim(u, a, a + m - 1, axis=axis) for a in (0, 1))
            flux = 2 * h2 * kl * kr / (kl + kr) * (ul - ur)
            after, before = [(0, 0), (0, 0)], [(0, 0), (0, 0)]
            after[axis], before[axis] = (0, 1), (1, 0)
            out = out + jnp.pad(flux, after) - jnp.pad(flux, before)
        edge = jnp.zeros(m).at[0].set(1.0).at[-1].set(1.0)
        out = out + 2 * h2 * k * u * (edge[:, None] + edge[None, :])
        return out.ravel()

    return matvec


def torch_matvec(m: int) -> Callable[[Any, Any], Any]:
    """The same product in torch."""
    h2 = float(m * m)
    edge = torch.zeros(m, dtype=torch.float64)
    edge[0] = edge[-1] = 1.0
    edges = edge[:, None] + edge[None, :]

    def matvec(theta: Any, x: Any) -> Any:
        k, u = torch.exp(theta).reshape(m, m), x.reshape(m, m)
        out = 2 * h2 * k * u * edges
        for axis in (0, 1):
            kl, kr = k.narrow(axis, 0, m - 1), k.narrow(axis, 1, m - 1)
            flux = 2 * h2 * kl * kr / (kl + kr) * (u.narrow(axis, 0, m - 1)
                                                   - u.narrow(axis, 1, m - 1))
            zero = torch.zeros_like(flux.narrow(axis, 0, 1))
            out = out + torch.cat([flux, zero], axis) - torch.cat([zero, flux], axis)
        return out.reshape(-1)

    return matvec


def entries(m: int) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, ...]]]:
    """The 5-point pattern as (rows, cols) and the face lists of :func:`values_in`."""
    index = np.arange(m * m).reshape(m, m)
    rows, cols, faces = [], [], []
    for axis in (0, 1):
        left = np.take(index, np.arange(m - 1), axis=axis).ravel()
        right = np.take(index, np.arange(1, m), axis=axis).ravel()
        edge = np.concatenate([np.take(index, [0], axis=axis).ravel(),
                               np.take(index, [m - 1], axis=axis).ravel()])
        rows += [left, right, left, right, edge]
        cols += [left, right, right, left, edge]
        faces.append((left, right, edge))
    return np.concatenate(rows), np.concatenate(cols), faces


def values_in(xp: Any, m: int, faces: list[tuple[np.ndarray, ...]]) -> Callable[[Any], Any]:
    """``values(θ)`` at :func:`entries`' pattern, in ``xp`` (jax.numpy or torch)."""
    h2 = float(m * m)
    index = [tuple(xp.asarray(a) if xp is jnp else torch.from_numpy(a) for a in f)
             for f in faces]
    cat = jnp.concatenate if xp is jnp else torch.cat

    def values(theta: Any) -> Any:
        k = xp.exp(theta)
        out = []
        for left, right, edge in index:
            T = 2 * h2 * k[left] * k[right] / (k[left] + k[right])
            out += [T, T, -T, -T, 2 * h2 * k[edge]]
        return cat(out)

    return values


# -- the timed runs --------------------------------------------------------------------------------
def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median_time(run: Callable[[Any], Any], args: list[Any], *,
                warm: bool = True) -> tuple[float, Any]:
    """The median time of ``run(a)`` over ``args`` and the last output; with ``warm``,
    ``args[0]`` is a warm-up run (compilation), not timed."""
    progress(getattr(run, "__name__", "run"))
    out = run(args[0]) if warm else None
    times = []
    for a in args[1:] if warm else args:
        start = time.perf_counter()
        out = run(a)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench(m: int, repeats: int, *, with_jax_cg: bool, with_lineax: bool) -> dict[str, Any]:
    model = diffusion_2d(m)
    n = model.n
    theta = np.asarray(model.theta)
    objective = model.problem.objective
    picked = objective.O.indices
    assert np.array_equal(objective.O.data, np.ones(picked.size)), "point observations"
    d = np.asarray(objective.d)
    b = np.asarray(model.problem.b(theta))
    rows, cols, faces = entries(m)
    pattern = (rows, cols)
    row: dict[str, Any] = {"n": n, "grid": f"{m}x{m}"}

    # Steady state of an optimisation loop: each solver made (and compiled) once, then each
    # repeat is one value_and_grad at a new θ with a new AMG set-up and no warm start.
    options = {"rtol": RTOL, "reuse_preconditioner": False, "warm_start": False}
    thetas = [theta + 1e-3 * k for k in range(repeats + 1)]
    solver = ka.AdjointSolver(model.problem, check_gradient=False, **options)

    def native(th: np.ndarray) -> np.ndarray:
        result = solver.gradient(th)
        row["native_iterations"] = (result.primal.iterations, result.adjoint_solve.iterations)
        return result.gradient

    row["ours_native_s"], reference = median_time(native, thetas)

    # JAX: the matrix-free primitive, AMG from values(θ)
    matvec, jvalues = jax_matvec(m), values_in(jnp, m, faces)
    d_j, b_j, picked_j = jnp.asarray(d), jnp.asarray(b), jnp.asarray(picked)

    def J_jax(x: Any) -> Any:
        return 0.5 * jnp.sum((x[picked_j] - d_j) ** 2)

    jax_grad = jax.jit(jax.value_and_grad(lambda th: J_jax(kj.linear_solve(
        matvec, th, b_j, structure="spd", values=jvalues, pattern=pattern, **options))))
    row["ours_jax_s"], grad_jax = median_time(
        lambda th: np.asarray(jax_grad(jnp.asarray(th))[1]), thetas)

    assembled_grad = jax.jit(jax.value_and_grad(lambda th: J_jax(kj.assembled_solve(
        jvalues, pattern, th, b_j, structure="spd", **options))))
    row["ours_jax_assembled_s"], grad_assembled = median_time(
        lambda th: np.asarray(assembled_grad(jnp.asarray(th))[1]), thetas)

    # torch: the same primitive
    tmatvec, tvalues = torch_matvec(m), values_in(torch, m, faces)
    d_t, b_t, picked_t = (torch.from_numpy(a) for a in (d, b, picked.astype(np.int64)))

    def ours_torch(theta_k: np.ndarray) -> np.ndarray:
        th = torch.from_numpy(theta_k.copy()).requires_grad_(True)
        x = kt.linear_solve(tmatvec, th, b_t, structure="spd", values=tvalues,
                            pattern=pattern, **options)
        (0.5 * torch.sum((x[picked_t] - d_t) ** 2)).backward()
        return th.grad.numpy()

    row["ours_torch_s"], grad_torch = median_time(ours_torch, thetas)

    diffs = {name: float(np.linalg.norm(g - reference) / np.linalg.norm(reference))
             for name, g in (("jax", grad_jax), ("jax_assembled", grad_assembled),
                             ("torch", grad_torch))}
    row["rel_diff"] = diffs
    row["max_rel_diff"] = max(diffs.values())
    row["jax_over_native"] = row["ours_jax_s"] / row["ours_native_s"]
    row["torch_over_native"] = row["ours_torch_s"] / row["ours_native_s"]

    if with_jax_cg:
        diagonal = jnp.asarray(np.asarray(model.problem.assemble(theta).diagonal()))

        @jax.jit
        def jax_cg(th: Any) -> Any:
            def J(t: Any) -> Any:
                inverse_diagonal = 1.0 / jax.lax.stop_gradient(
                    jnp.zeros(n).at[jnp.asarray(rows)].add(
                        jnp.where(jnp.asarray(rows == cols), jvalues(t), 0.0)))
                x, _ = jax.scipy.sparse.linalg.cg(
                    lambda v: matvec(t, v), b_j, tol=RTOL, maxiter=200_000,
                    M=lambda v: inverse_diagonal * v)
                return J_jax(x)
            return jax.value_and_grad(J)(th)

        del diagonal
        # compiled ahead of time; the slow JAX CG is timed once at N ≥ 2¹⁸
        compiled = jax_cg.lower(jnp.asarray(theta)).compile()
        cg_thetas = thetas[1:] if n < 2**18 else thetas[-1:]
        row["jax_cg_s"], (_, grad_cg) = median_time(
            lambda th: jax.block_until_ready(compiled(jnp.asarray(th))), cg_thetas, warm=False)
        row["jax_cg_rel_diff"] = float(np.linalg.norm(np.asarray(grad_cg) - reference)
                                       / np.linalg.norm(reference))
        row["speedup_vs_jax_cg"] = row["jax_cg_s"] / row["ours_jax_s"]
    if with_lineax and n < 2**18:  # as slow as JAX's CG: timed at the smaller N only
        row.update(lineax_run(matvec, jvalues, rows, cols, b_j, J_jax, cg_thetas,
                              reference))
    return row


def lineax_run(matvec: Any, jvalues: Any, rows: np.ndarray, cols: np.ndarray, b_j: Any,
               J_jax: Any, thetas: list[np.ndarray], reference: np.ndarray) -> dict[str, Any]:
    try:
        import lineax as lx
    except ImportError:
        return {"lineax_cg_s": None, "lineax": "not installed"}
    n = b_j.shape[0]
    structure = jax.ShapeDtypeStruct((n,), jnp.float64)

    @jax.jit
    def run(th: Any) -> Any:
        def J(t: Any) -> Any:
            diagonal = jax.lax.stop_gradient(jnp.zeros(n).at[jnp.asarray(rows)].add(
                jnp.where(jnp.asarray(rows == cols), jvalues(t), 0.0)))
            # a Partial: θ is a leaf lineax differentiates through (a closure hides it)
            A = lx.FunctionLinearOperator(jax.tree_util.Partial(matvec, t), structure,
                                          tags=lx.positive_semidefinite_tag)
            M = lx.TaggedLinearOperator(lx.DiagonalLinearOperator(1.0 / diagonal),
                                        lx.positive_semidefinite_tag)
            solver = lx.CG(rtol=LINEAX_RTOL, atol=0.0, max_steps=50_000)
            solution = lx.linear_solve(A, b_j, solver,
                                       options={"preconditioner": M})
            return J_jax(solution.value)
        return jax.value_and_grad(J)(th)

    try:
        compiled = run.lower(jnp.asarray(thetas[0])).compile()
        seconds, (_, grad) = median_time(
            lambda th: jax.block_until_ready(compiled(jnp.asarray(th))), thetas, warm=False)
    except Exception as exc:  # noqa: BLE001 - a third-party solver's failure is a result
        return {"lineax_cg_s": None, "lineax_error": f"{type(exc).__name__}: "
                                                     f"{str(exc).splitlines()[0][:200]}"}
    return {"lineax_cg_s": seconds, "lineax_version": getattr(lx, "__version__", "?"),
            "lineax_rel_diff": float(np.linalg.norm(np.asarray(grad) - reference)
                                     / np.linalg.norm(reference))}


# -- report ---------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "jax": jax.__version__, "torch": torch.__version__}


def table(rows: list[dict[str, Any]]) -> str:
    keys = ["n", "ours_native_s", "ours_jax_s", "ours_jax_assembled_s", "ours_torch_s",
            "jax_cg_s", "lineax_cg_s", "speedup_vs_jax_cg", "jax_over_native", "max_rel_diff"]
    lines = [" ".join(f"{k:>20}" for k in keys)]
    for row in rows:
        cells = []
        for k in keys:
            v = row.get(k)
            cells.append(f"{v:>20.3g}" if isinstance(v, float) else f"{str(v):>20}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 2^16 only, one timed run, no lineax (under 90 s)")
    parser.add_argument("--grids", type=int, nargs="+", help="grid sizes m (N = m²)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-jax-cg", action="store_true", help="skip JAX's CG and lineax")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    grids = args.grids or ([256] if args.quick else [256, 1024])
    repeats = 1 if args.quick else args.repeats
    rows = [bench(m, repeats, with_jax_cg=not args.no_jax_cg,
                  with_lineax=not (args.no_jax_cg or args.quick)) for m in grids]
    last = rows[-1]
    report = {"machine": machine(), "rtol": RTOL, "targets": TARGETS, "rows": rows,
              **{k: last.get(k) for k in ("n", "ours_jax_s", "jax_cg_s", "ours_native_s",
                                          "ours_torch_s", "speedup_vs_jax_cg",
                                          "jax_over_native", "max_rel_diff")}}
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: report[k] for k in ("n", "ours_jax_s", "jax_cg_s", "ours_native_s",
                                             "ours_torch_s", "speedup_vs_jax_cg",
                                             "jax_over_native", "max_rel_diff")}, default=str))
    return report


if __name__ == "__main__":
    main()

"""A neural field for the conductivity, trained in JAX through a 262,144-unknown sparse solve.

The log-conductivity of −∇·(e^θ ∇u) = f on the unit square (512 × 512 cells, the scheme of
:func:`krylov_adjoint.gallery.diffusion_2d`) is a small neural field: random Fourier features
of the cell centre followed by a one-hidden-layer MLP, ``θ(y) = MLP(φ(y))``, a few thousand
weights w. From noisy point observations of u, the weights are fitted by Adam (written out
below) on

    L(w) = ½ Σ_i ((O u(θ(w)))_i − d_i)² / σ²,   A(θ(w)) u = f,

where u comes from :func:`krylov_adjoint.jax.linear_solve`: the product ``A(θ) u`` is
written in JAX, CG with AMG from ``values(θ)`` runs on the host, and ``jax.value_and_grad``
gets dL/dw through one adjoint solve (transposed AMG) and JAX's chain rule through the MLP.
The composite gradient is Taylor-tested first (rate 2). The figure shows the true and the
recovered log-conductivity and the loss. Usage::

    python examples/jax_inverse_diffusion.py            # 512 × 512, 150 Adam steps
    python examples/jax_inverse_diffusion.py --quick    # 96 × 96, 25 steps
    python examples/jax_inverse_diffusion.py --out docs/img
"""

from __future__ import annotations

import argparse

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: I001  (sets OPENBLAS_NUM_THREADS before numpy loads)
    Stopwatch,
    add_out_argument,
    figure_path,
    print_summary,
    pyplot,
    save_figure,
    shown_path,
)
from jax.flatten_util import ravel_pytree  # noqa: E402

import krylov_adjoint as ka  # noqa: E402
import krylov_adjoint.jax as kj  # noqa: E402
from krylov_adjoint.gallery import diffusion_2d  # noqa: E402

jax.config.update("jax_enable_x64", True)


def diffusion(m: int):
    """``matvec(θ, u)`` and ``values(θ)`` at ``(rows, cols)``: −∇·(e^θ∇u), h = 1/m."""
    h2 = float(m * m)
    index = np.arange(m * m).reshape(m, m)
    faces, rows, cols = [], [], []
    for axis in (0, 1):
        left = np.take(index, np.arange(m - 1), axis=axis).ravel()
        right = np.take(index, np.arange(1, m), axis=axis).ravel()
        edge = np.concatenate([np.take(index, [0], axis=axis).ravel(),
                               np.take(index, [m - 1], axis=axis).ravel()])
        faces.append((left, right, edge))
        rows += [left, right, left, right, edge]
        cols += [left, right, right, left, edge]

    def face_terms(k):
        for left, right, edge in faces:
            yield left, right, edge, 2 * h2 * k[left] * k[right] / (k[left] + k[right])

    def matvec(theta, u):
        k, out = jnp.exp(theta), jnp.zeros(m * m)
        for left, right, edge, T in face_terms(k):
            flux = T * (u[left] - u[right])
            out = out.at[left].add(flux).at[right].add(-flux).at[edge].add(
                2 * h2 * k[edge] * u[edge])
        return out

    def values(theta):
        parts = []
        for _, _, edge, T in face_terms(jnp.exp(theta)):
            parts += [T, T, -T, -T, 2 * h2 * jnp.exp(theta)[edge]]
        return jnp.concatenate(parts)

    return matvec, values, (np.concatenate(rows), np.concatenate(cols))


def neural_field(m: int, features: int, width: int, seed: int):
    """``field(w) -> θ`` on the cell centres, and initial weights w."""
    rng = np.random.default_rng(seed)
    centres = (np.stack(np.meshgrid(np.arange(m), np.arange(m), indexing="ij"), -1)
               .reshape(-1, 2) + 0.5) / m
    B = rng.normal(scale=3.0, size=(2, features))                # Fourier frequencies
    phi = jnp.asarray(np.concatenate([np.sin(2 * np.pi * centres @ B),
                                      np.cos(2 * np.pi * centres @ B)], axis=1))
    weights = {"W1": rng.normal(scale=1 / np.sqrt(2 * features), size=(2 * features, width)),
               "b1": np.zeros(width), "W2": np.zeros(width), "b2": np.zeros(())}

    def field(w):
        return jnp.tanh(phi @ w["W1"] + w["b1"]) @ w["W2"] + w["b2"]

    return field, jax.tree_util.tree_map(jnp.asarray, weights)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="96 × 96, 25 steps")
    parser.add_argument("--steps", type=int, default=None)
    add_out_argument(parser, "the recovered conductivity")
    args = parser.parse_args(argv)
    m, steps = (96, 25) if args.quick else (512, 150)
    steps = args.steps or steps
    clock = Stopwatch()

    truth = diffusion_2d(m, observe_every=8)
    misfit = truth.problem.objective
    picked, sigma = jnp.asarray(misfit.O.indices), 0.01 * float(np.abs(misfit.d).max())
    d = jnp.asarray(misfit.d + sigma * np.random.default_rng(1).standard_normal(misfit.d.size))
    b = jnp.asarray(truth.problem.b(truth.theta))
    matvec, values, pattern = diffusion(m)
    field, w0 = neural_field(m, features=32, width=32, seed=0)
    flat0, unravel = ravel_pytree(w0)

    def loss(flat, rtol):
        theta = field(unravel(flat))
        u = kj.linear_solve(matvec, theta, b, structure="spd", values=values, pattern=pattern,
                            rtol=rtol, reuse_preconditioner=True)
        return 0.5 * jnp.sum(((u[picked] - d) / sigma) ** 2)

    # 1. the composite gradient (MLP ∘ adjoint solve), Taylor-tested with tight solves
    checked = jax.jit(jax.value_and_grad(lambda f: loss(f, 1e-12)))
    value, grad = checked(flat0)
    taylor = ka.verify.taylor_test(lambda f: float(checked(jnp.asarray(f))[0]),
                                   np.asarray(flat0), np.asarray(grad), rng=0)
    print(taylor.summary())
    clock.lap("taylor")

    # 2. Adam on the weights, each step one primal and one adjoint solve (AMG kept across w)
    step = jax.jit(jax.value_and_grad(lambda f: loss(f, 1e-8)))
    flat, mean, second, history = flat0, jnp.zeros_like(flat0), jnp.zeros_like(flat0), []
    rate, beta1, beta2 = 0.02, 0.9, 0.999
    for k in range(1, steps + 1):
        value, grad = step(flat)
        history.append(float(value))
        mean = beta1 * mean + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad**2
        flat = flat - rate * (mean / (1 - beta1**k)) / (jnp.sqrt(second / (1 - beta2**k))
                                                         + 1e-8)
    final = float(step(flat)[0])
    clock.lap("training")

    recovered = np.asarray(field(unravel(flat))).reshape(m, m)
    true_field = np.asarray(truth.theta_true).reshape(m, m)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, image, title in ((axes[0], true_field, "true log-conductivity"),
                             (axes[1], recovered, "neural field after training")):
        shown = ax.imshow(image.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis",
                          vmin=true_field.min(), vmax=true_field.max())
        ax.set_title(title)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    axes[2].semilogy(history)
    axes[2].set_xlabel("Adam step")
    axes[2].set_ylabel("misfit L(w)")
    axes[2].grid(True, which="both", alpha=0.3)
    figure = save_figure(fig, figure_path(args.out, "app_jax_neural_field.png"))
    return print_summary({
        "n": m * m, "weights": int(flat0.size), "taylor_rate": taylor.min_rate,
        "taylor_passed": bool(taylor.passed), "initial_objective": history[0],
        "final_objective": final, "iterations": steps,
        "relative_error_log_k": float(np.linalg.norm(recovered - true_field)
                                      / np.linalg.norm(true_field)),
        "seconds": clock.elapsed, "seconds_taylor": clock.laps["taylor"],
        "seconds_training": clock.laps["training"], "figure": shown_path(figure)})


if __name__ == "__main__":
    main()

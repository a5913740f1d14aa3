"""``x = A(θ)⁻¹ b`` as a JAX function: ``jax.lax.custom_linear_solve`` over host solves.

``custom_linear_solve`` is given the user's product ``v ↦ A(θ) v`` (in JAX) and two solves
that run on the host through ``jax.pure_callback``: ``solve`` (A with M) and
``transpose_solve`` (Aᵀ with Mᵀ, from the same set-up). JAX then derives everything else:

* forward mode: ``ẋ = A⁻¹(ḃ − (∂A/∂θ·θ̇) x)``, the product's JVP in θ and one ``solve``;
* reverse mode: ``λ = A⁻ᵀ x̄`` by one ``transpose_solve``, then ``b̄ = λ`` and
  ``θ̄ = −λᵀ(∂A/∂θ)x`` by the product's VJP in θ;
* ``jax.vmap``: the callbacks receive the whole batch (``vmap_method="broadcast_all"``) and
  solve it column by column on the same set-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import CallbackError, InputError
from ..frameworks.host import HostSolver, SolverCache
from ..frameworks.options import check_options, options_key
from ._errors import recording
from ._operators import assembled_operator, operator

__all__ = ["linear_solve", "assembled_solve", "clear_cache"]

_CACHE = SolverCache()


def clear_cache() -> None:
    """Forget the solvers kept by :func:`linear_solve` and :func:`assembled_solve` (their
    set-ups and warm starts)."""
    _CACHE.clear()


def linear_solve(matvec: Callable[[Any, Any], Any], theta: Any, b: Any, *,
                 structure: str = "general", values: Callable[[Any], Any] | None = None,
                 pattern: Any = None, **options: Any) -> Any:
    """``x = A(θ)⁻¹ b`` with ``A(θ) x = matvec(θ, x)`` written in JAX; differentiable.

    Usable inside ``jax.grad``, ``jax.value_and_grad``, ``jax.jvp`` (one tangent solve),
    ``jax.jit`` and ``jax.vmap`` (over b: one solve per column on a shared set-up). b may
    depend on θ through JAX. The solves run on the host (``jax.pure_callback``; no GPU),
    on the library's engine: GMRES or CG with AMG built from ``values`` by default, the
    reverse pass's solve with Aᵀ and the *transposed* AMG cycle of the same set-up.

    Parameters
    ----------
    matvec : callable ``(theta, x) -> A(theta) @ x``
        In JAX; linear in x (its transpose comes from ``jax.linear_transpose``).
    theta : jax array of shape (P,), float64
    b : jax array of shape (N,), float64
    structure : {"general", "symmetric", "spd"}
        Declared for every θ; ``"spd"`` selects CG under ``method="auto"``.
    values, pattern : optional
        ``values(theta)`` in JAX, the entries of A(θ) (or of an approximation) at
        ``pattern`` (a :class:`~krylov_adjoint.adapters.SparsityPattern` or ``(rows,
        cols)``): the assembled matrix the preconditioner is built from. Without them
        ``preconditioner="auto"`` means none.
    **options
        As :class:`~krylov_adjoint.AdjointSolver`'s: ``method``, ``rtol`` (default 1e-8),
        ``atol``, ``adjoint_rtol``, ``adjoint_atol``, ``maxiter``, ``restart``,
        ``preconditioner``, ``preconditioner_options``, ``warm_start``,
        ``rebuild_factor``, ``reuse_preconditioner``, ``monitor``, ``check_transpose``.

    Returns
    -------
    jax array of shape (N,)

    Raises
    ------
    InputError
        On float32 (or other non-float64) θ or b, or a wrong shape.
    CallbackError
        When ``matvec`` returns another shape than x's or is not linear in x.
    jax.errors.JaxRuntimeError
        Wrapping the library's error of a host solve (a
        :class:`~krylov_adjoint.ConvergenceError` when a solve does not converge); inside
        :func:`library_errors`, that error itself.

    Notes
    -----
    The solver (and its set-up) is kept between calls with the same ``matvec``, ``values``
    and ``pattern`` objects, shapes and options (the last 8 such; :func:`clear_cache`), so
    define ``matvec`` once rather than as a new lambda per call. Within one call the
    forward and backward solves always share it.

    Examples
    --------
    A 1D Poisson matrix with a per-node reaction θ, and ``d(sum x)/dθ``:

    >>> import jax, jax.numpy as jnp
    >>> import krylov_adjoint.jax as kj
    >>> jax.config.update("jax_enable_x64", True)
    >>> def matvec(theta, x):
    ...     return 2 * x - jnp.roll(x, 1).at[0].set(0) - jnp.roll(x, -1).at[-1].set(0) \\
    ...         + theta * x
    >>> f = lambda theta: kj.linear_solve(matvec, theta, jnp.ones(4), structure="spd").sum()
    >>> g = jax.grad(f)(jnp.ones(4))
    >>> bool(jnp.allclose(g, -kj.linear_solve(matvec, jnp.ones(4), jnp.ones(4),
    ...                                       structure="spd") ** 2))
    True
    """
    theta, b = _checked_inputs(theta, b)
    n, n_params = b.shape[-1], theta.shape[-1]
    _check_product(lambda v: matvec(theta, v), n, "matvec")
    check_options(options)
    key = _key("matvec", (matvec, values), pattern, n, n_params, structure, options)
    host = _CACHE.get(key, lambda: _host_solver(
        operator(matvec, n=n, structure=structure, values=values, pattern=pattern),
        n_params, pattern, options))
    return _solve(host, lambda v: matvec(theta, v), theta, b)


def assembled_solve(values: Callable[[Any], Any], pattern: Any, theta: Any, b: Any, *,
                    structure: str = "general", **options: Any) -> Any:
    """``x = A(θ)⁻¹ b`` with A(θ) given by ``values(θ)`` in JAX at a fixed ``pattern``.

    The host products use the assembled sparse matrix (scipy), faster than a JAX ``matvec``
    called from the host; in reverse mode the cotangent of the values is the pattern's
    ``λᵢ xⱼ``, pulled back to θ by JAX. Otherwise as :func:`linear_solve` (same options;
    AMG from the values by default).

    Parameters
    ----------
    values : callable ``theta -> array (nnz,)``
        In JAX: the entries of A(θ) at ``pattern`` (repeated positions are summed).
    pattern : SparsityPattern or (rows, cols)
    theta, b, structure, **options
        As in :func:`linear_solve`.

    Examples
    --------
    ``A(θ) = diag(θ)``:

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> import krylov_adjoint.jax as kj
    >>> jax.config.update("jax_enable_x64", True)
    >>> idx = np.arange(3)
    >>> f = lambda th: kj.assembled_solve(lambda t: t, (idx, idx), th, jnp.ones(3),
    ...                                   structure="spd", rtol=1e-12).sum()
    >>> jax.grad(f)(jnp.array([1.0, 2.0, 4.0]))            # −1/θ²
    Array([-1.    , -0.25  , -0.0625], dtype=float64)
    """
    theta, b = _checked_inputs(theta, b)
    n, n_params = b.shape[-1], theta.shape[-1]
    check_options(options)
    key = _key("values", (values,), pattern, n, n_params, structure, options)
    host = _CACHE.get(key, lambda: _host_solver(
        assembled_operator(values, pattern, n=n, structure=structure), n_params, pattern,
        options))
    entries = host.engine.problem.operator.entries
    rows, cols = jnp.asarray(entries.rows), jnp.asarray(entries.cols)
    vals = values(theta)
    if jnp.shape(vals) != (entries.size,):
        raise CallbackError("values", f"expected shape ({entries.size},) (one value per "
                                      f"entry of the pattern), got {jnp.shape(vals)}")

    def product(v: Any) -> Any:
        return jax.ops.segment_sum(vals * v[cols], rows, num_segments=n)

    return _solve(host, product, theta, b)


# -- the primitive ----------------------------------------------------------------------------
def _solve(host: HostSolver, product: Callable[[Any], Any], theta: Any, b: Any) -> Any:
    """``custom_linear_solve`` with the host's solve and transposed solve."""

    def solve(_: Any, rhs: Any) -> Any:
        return _on_host(host.solve, theta, rhs)

    def transpose_solve(_: Any, rhs: Any) -> Any:
        return _on_host(host.solve_transpose, theta, rhs)

    return jax.lax.custom_linear_solve(product, b, solve, transpose_solve)


def _on_host(fn: Callable[[Any, Any], np.ndarray], theta: Any, rhs: Any) -> Any:
    """``fn(θ, rhs)`` on numpy arrays through ``jax.pure_callback`` (batched: whole)."""
    call = recording(lambda th, r: fn(np.asarray(th), np.asarray(r)))
    return jax.pure_callback(call, jax.ShapeDtypeStruct(jnp.shape(rhs), jnp.float64), theta,
                             rhs, vmap_method="broadcast_all")


# -- checks -------------------------------------------------------------------------------
def _checked_inputs(theta: Any, b: Any) -> tuple[Any, Any]:
    """θ and b as float64 JAX arrays of one dimension, or an :class:`InputError`."""
    out = []
    for name, value in (("theta", theta), ("b", b)):
        dtype = jnp.result_type(value)
        if dtype != jnp.float64:
            hint = ("; enable float64 with jax.config.update('jax_enable_x64', True)"
                    if not jax.config.read("jax_enable_x64") else "")
            raise InputError(name, f"expected dtype float64, got {dtype}: the solves and "
                                   f"their gradients are float64{hint}")
        value = jnp.asarray(value)
        if value.ndim != 1 or value.shape[0] == 0:
            raise InputError(name, f"expected a non-empty 1-D array, got shape {value.shape} "
                                   "(batch with jax.vmap)")
        out.append(value)
    return out[0], out[1]


def _check_product(product: Callable[[Any], Any], n: int, name: str) -> None:
    """Refuse a product that changes the shape of x or is not linear in it (trace time)."""
    example = jax.ShapeDtypeStruct((n,), jnp.float64)
    try:
        shape = jax.eval_shape(product, example)
    except Exception as exc:
        raise CallbackError(name, f"raised {type(exc).__name__} on x of shape ({n},): "
                                  f"{exc}") from exc
    if getattr(shape, "shape", None) != (n,) or shape.dtype != jnp.float64:
        got = getattr(shape, "shape", type(shape).__name__)
        raise CallbackError(name, f"expected an output of shape ({n},) and dtype float64 "
                                  f"(like x), got {got} {getattr(shape, 'dtype', '')}".rstrip())
    try:
        jax.eval_shape(jax.linear_transpose(product, example), example)
    except Exception as exc:
        raise CallbackError(name, f"is not linear in x: jax.linear_transpose failed "
                                  f"({type(exc).__name__}: {exc})") from exc


def _key(kind: str, callbacks: tuple[Any, ...], pattern: Any, n: int, n_params: int,
         structure: str, options: dict[str, Any]) -> tuple[Any, ...] | None:
    opts = options_key(options)
    if opts is None:
        return None
    return (kind, callbacks, None if pattern is None else id(pattern), n, n_params, structure,
            opts)


def _host_solver(op: Any, n_params: int, pattern: Any, options: dict[str, Any]) -> HostSolver:
    host = HostSolver(op, n_params, **options)
    host.keep = pattern  # the key holds id(pattern): keep it alive as long as the solver
    return host

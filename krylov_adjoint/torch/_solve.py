"""``x = A(θ)⁻¹ b`` as a ``torch.autograd.Function`` over host solves on the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import CallbackError, InputError
from ..frameworks.host import HostSolver, SolverCache
from ..frameworks.options import check_options, options_key
from ._operators import as_array, as_tensor, operator

__all__ = ["linear_solve", "clear_cache"]

_CACHE = SolverCache()

Matvec = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def clear_cache() -> None:
    """Forget the solvers kept by :func:`linear_solve` (their set-ups and warm starts)."""
    _CACHE.clear()


def linear_solve(matvec: Matvec, theta: torch.Tensor, b: torch.Tensor, *,
                 structure: str = "general",
                 values: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 pattern: Any = None, **options: Any) -> torch.Tensor:
    """``x = A(θ)⁻¹ b`` with ``A(θ) x = matvec(θ, x)`` written in torch; differentiable.

    A ``torch.autograd.Function``: backward by one solve with Aᵀ and the *transposed*
    preconditioner of the forward's set-up (then ``θ̄ = −λᵀ(∂A/∂θ)x`` by
    ``torch.autograd.grad`` of ``matvec`` and ``b̄ = λ``), forward mode by one tangent solve.
    b may depend on θ through torch; b of shape (..., N) solves each column on the same
    set-up. The solves run on the host: CPU float64 tensors only.

    Parameters
    ----------
    matvec : callable ``(theta, x) -> A(theta) @ x``
        In torch; linear in x (its transpose comes from ``torch.func.vjp``).
    theta : tensor of shape (P,), float64
    b : tensor of shape (N,) or (..., N), float64
    structure : {"general", "symmetric", "spd"}
    values, pattern : optional
        ``values(theta)`` in torch at ``pattern`` (a
        :class:`~krylov_adjoint.adapters.SparsityPattern` or ``(rows, cols)``): the
        assembled matrix the preconditioner (AMG by default) is built from.
    **options
        As :class:`~krylov_adjoint.AdjointSolver`'s (see
        :func:`krylov_adjoint.jax.linear_solve`).

    Returns
    -------
    tensor of b's shape

    Raises
    ------
    InputError
        On a tensor that is not float64, on a GPU, or of a wrong shape.
    CallbackError
        When ``matvec`` returns another shape than x's; when its derived transpose fails
        the dot test at a new θ (a product not linear in x).
    ConvergenceError
        When a solve does not converge (in the forward or the backward pass).

    Examples
    --------
    A 1D Poisson matrix with a per-node reaction θ, and ``d(sum x)/dθ = −x²``:

    >>> import torch
    >>> import krylov_adjoint.torch as kt
    >>> def matvec(theta, x):
    ...     left = torch.cat([x.new_zeros(1), x[:-1]])
    ...     right = torch.cat([x[1:], x.new_zeros(1)])
    ...     return 2 * x - left - right + theta * x
    >>> theta = torch.ones(4, dtype=torch.float64, requires_grad=True)
    >>> x = kt.linear_solve(matvec, theta, torch.ones(4, dtype=torch.float64), structure="spd")
    >>> x.sum().backward()
    >>> bool(torch.allclose(theta.grad, -x.detach() ** 2))
    True
    """
    theta, b = _checked_inputs(theta, b)
    n, n_params = b.shape[-1], theta.shape[-1]
    check_options(options)
    _check_product(matvec, theta, b)
    opts = options_key(options)
    key = None if opts is None else (matvec, values, None if pattern is None else id(pattern),
                                     n, n_params, structure, opts)

    def build() -> HostSolver:
        host = HostSolver(operator(matvec, n=n, structure=structure, values=values,
                                   pattern=pattern), n_params, **options)
        host.keep = pattern  # the key holds id(pattern): keep it alive with the solver
        return host

    return _LinearSolve.apply(_CACHE.get(key, build), matvec, theta, b)


class _LinearSolve(torch.autograd.Function):
    """x = A(θ)⁻¹ b; backward by the transposed solve, forward mode by a tangent solve."""

    @staticmethod
    def forward(host: HostSolver, matvec: Matvec, theta: torch.Tensor,  # type: ignore[override]
                b: torch.Tensor) -> torch.Tensor:
        return as_tensor(host.solve(as_array(theta), as_array(b)))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        host, matvec, theta, _ = inputs
        ctx.host, ctx.matvec = host, matvec
        ctx.save_for_backward(theta, output)
        ctx.theta, ctx.x = theta.detach(), output.detach()  # forward mode reads these

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, x_bar: torch.Tensor) -> tuple[Any, ...]:
        theta, x = ctx.saved_tensors
        lam = as_tensor(ctx.host.solve_transpose(as_array(theta), as_array(x_bar)))
        theta_bar = None
        if ctx.needs_input_grad[2]:
            with torch.enable_grad():
                th = theta.detach().requires_grad_(True)
                columns = zip(x.detach().reshape(-1, x.shape[-1]),
                              lam.reshape(-1, x.shape[-1]), strict=True)
                product = sum(torch.dot(ctx.matvec(th, xk), lk) for xk, lk in columns)
                (theta_bar,) = torch.autograd.grad(product, th)
            theta_bar = -theta_bar
        b_bar = lam if ctx.needs_input_grad[3] else None
        return None, None, theta_bar, b_bar

    @staticmethod
    def jvp(ctx: Any, _host: Any, _matvec: Any, theta_dot: torch.Tensor | None,
            b_dot: torch.Tensor | None) -> torch.Tensor:
        x = ctx.x
        rhs = torch.zeros_like(x) if b_dot is None else b_dot.expand_as(x).clone()
        if theta_dot is not None:
            columns = x.reshape(-1, x.shape[-1])
            products = [_operator_jvp(ctx.matvec, ctx.theta, xk, theta_dot) for xk in columns]
            rhs = rhs - torch.stack(products).reshape(x.shape)
        return as_tensor(ctx.host.solve(as_array(ctx.theta), as_array(rhs)))


def _operator_jvp(matvec: Matvec, theta: torch.Tensor, x: torch.Tensor,
                  theta_dot: torch.Tensor) -> torch.Tensor:
    """``(∂A/∂θ·θ̇) x`` by reverse mode twice (``torch.func.jvp`` cannot nest inside the
    forward-mode pass that calls it): ``g(u) = ∂(uᵀA(θ)x)/∂θ`` is linear in u, and
    ``∂(g(u)·θ̇)/∂u`` is the JVP."""
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        u = torch.zeros_like(x, requires_grad=True)
        (g,) = torch.autograd.grad(torch.dot(matvec(th, x), u), th, create_graph=True)
        (out,) = torch.autograd.grad(torch.dot(g, theta_dot.detach()), u, allow_unused=True)
    return torch.zeros_like(x) if out is None else out


def _checked_inputs(theta: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """θ and b as CPU float64 tensors (θ 1-D, b at least 1-D), or an :class:`InputError`."""
    for name, value in (("theta", theta), ("b", b)):
        if not isinstance(value, torch.Tensor):
            raise InputError(name, f"expected a torch tensor, got {type(value).__name__}")
        if value.dtype != torch.float64:
            raise InputError(name, f"expected dtype torch.float64, got {value.dtype}: the "
                                   "solves and their gradients are float64")
        if value.device.type != "cpu":
            raise InputError(name, f"expected a CPU tensor, got one on {value.device}: the "
                                   "solves run on the host")
    if theta.ndim != 1 or theta.numel() == 0:
        raise InputError("theta", f"expected a non-empty 1-D tensor, got shape "
                                  f"{tuple(theta.shape)}")
    if b.ndim == 0 or b.shape[-1] == 0:
        raise InputError("b", f"expected shape (N,) or (..., N), got {tuple(b.shape)}")
    return theta, b


def _check_product(matvec: Matvec, theta: torch.Tensor, b: torch.Tensor) -> None:
    """One product on a vector like b: refuse an output of another shape or dtype."""
    n = b.shape[-1]
    with torch.no_grad():
        try:
            out = matvec(theta.detach(), torch.zeros(n, dtype=torch.float64))
        except Exception as exc:
            raise CallbackError("matvec", f"raised {type(exc).__name__} on x of shape "
                                          f"({n},): {exc}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n,) \
            or out.dtype != torch.float64:
        got = (f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor)
               else type(out).__name__)
        raise CallbackError("matvec", f"expected an output of shape ({n},) and dtype "
                                      f"torch.float64 (like x), got {got}")

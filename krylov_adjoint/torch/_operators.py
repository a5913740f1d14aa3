"""A(θ) written in torch, as a ParametricOperator on numpy arrays (the host side).

The transpose ``y ↦ A(θ)ᵀ y`` is ``torch.func.vjp`` of ``x ↦ matvec(θ, x)`` (exact for a
product linear in x), the operator VJP ``λᵀ(∂A/∂θ)x`` is ``torch.func.vjp`` of
``θ ↦ matvec(θ, x)`` and the JVP ``torch.func.jvp`` of it. Tensors share memory with the
numpy arrays (``torch.from_numpy``); θ becomes a tensor once per θ (``prepare``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..frameworks.operator import host_operator
from ..problem.operator import ParametricOperator

__all__ = ["operator", "as_tensor", "as_array"]


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A float64 tensor viewing ``array`` (copied when read-only or not contiguous)."""
    array = np.asarray(array, dtype=np.float64)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, copy=True)
    return torch.from_numpy(array)


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """The values of a CPU tensor as a numpy array (no copy when possible)."""
    return tensor.detach().numpy()


class _Theta:
    """θ as a tensor, made once per θ (the operator's ``prepare``)."""

    def __init__(self) -> None:
        self.key: bytes | None = None
        self._array: np.ndarray | None = None  # the last θ array seen, compared by identity
        self.value: torch.Tensor | None = None

    def prepare(self, theta: np.ndarray) -> None:
        if theta is self._array and not theta.flags.writeable:
            return  # the engine passes its bound θ: one read-only array per θ
        key = np.ascontiguousarray(theta).tobytes()
        if key != self.key:
            self.key, self.value = key, as_tensor(theta)
        self._array = theta

    def __call__(self, theta: np.ndarray) -> Any:
        self.prepare(theta)
        return self.value


def _host(fn: Callable[..., torch.Tensor], theta: _Theta) -> Callable[..., np.ndarray]:
    """A torch function of (θ, *tensors) as a numpy callback (no graph recorded)."""

    def call(th: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return as_array(fn(theta(th), *(as_tensor(a) for a in arrays)))

    return call


def operator(matvec: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, n: int,
             structure: str = "general",
             values: Callable[[torch.Tensor], torch.Tensor] | None = None,
             pattern: Any = None) -> ParametricOperator:
    """A(θ) from ``matvec(θ, x)`` in torch, as a :class:`~krylov_adjoint.ParametricOperator`.

    Parameters
    ----------
    matvec : callable ``(theta, x) -> A(theta) @ x``
        In torch (float64 tensors), linear in x; differentiable in θ.
    n : int
        N.
    structure : {"general", "symmetric", "spd"}
        Declared for every θ; the transpose is derived by ``torch.func.vjp`` unless symmetric.
    values, pattern : optional
        ``values(theta)`` in torch, the entries of (an approximation of) A(θ) at
        ``pattern`` — a :class:`~krylov_adjoint.adapters.SparsityPattern` or ``(rows,
        cols)`` — assembled on the host to build preconditioners (AMG by default).

    Examples
    --------
    >>> import numpy as np, torch
    >>> op = operator(lambda th, x: th * x + torch.roll(x, 1), n=3)
    >>> theta = np.array([1.0, 2.0, 3.0])
    >>> op.matvec(theta, np.array([1.0, 0.0, 0.0])), op.rmatvec(theta, np.array([1.0, 0.0, 0.0]))
    (array([1., 1., 0.]), array([1., 0., 1.]))
    >>> op.vjp(theta, np.ones(3), np.array([1.0, 2.0, 3.0]))     # λᵢ xᵢ
    array([1., 2., 3.])
    """
    if not callable(matvec):
        raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
    theta = _Theta()

    def transposed(th: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.func.vjp(lambda v: matvec(th, v), torch.zeros_like(y))[1](y)[0]

    def vjp(th: torch.Tensor, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return torch.func.vjp(lambda t: matvec(t, x), th)[1](lam)[0]

    def jvp(th: torch.Tensor, x: torch.Tensor, dth: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(lambda t: matvec(t, x), (th,), (dth,))[1]

    return host_operator(lambda f: _host(f, theta), matvec=matvec, transposed=transposed,
                         vjp=vjp, jvp=jvp, n=n, structure=structure, values=values,
                         pattern=pattern, prepare=theta.prepare)

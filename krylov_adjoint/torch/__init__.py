"""Differentiable sparse solves inside PyTorch: write ``A(θ) x`` in torch, get the adjoint with Mᵀ.

:func:`linear_solve` is ``x = A(θ)⁻¹ b`` as a ``torch.autograd.Function``: the forward pass
solves on the library's engine (on the host, from CPU float64 tensors), the backward pass
solves ``A(θ)ᵀ λ = x̄`` with the transposed preconditioner of the same set-up and returns
``b̄ = λ`` and ``θ̄ = −λᵀ(∂A/∂θ)x`` by ``torch.autograd.grad`` of the user's product; forward
mode (``torch.func.jvp``, ``torch.autograd.forward_ad``) is one tangent solve. Needs
``pip install 'krylov-adjoint[torch]'``.

* :func:`linear_solve` — ``matvec(θ, x)`` in torch, optionally ``values(θ)`` on a fixed
  pattern for the preconditioner;
* :func:`operator` — the same operator as a :class:`~krylov_adjoint.ParametricOperator` on
  numpy arrays, for :func:`~krylov_adjoint.verify.check_problem` or an
  :class:`~krylov_adjoint.AdjointSolver`;
* :func:`clear_cache` — forget the kept solvers and their set-ups.
"""

from ..errors import require

require("torch", "torch", "krylov_adjoint.torch")

from ._operators import operator as operator  # noqa: E402
from ._solve import clear_cache as clear_cache  # noqa: E402
from ._solve import linear_solve as linear_solve  # noqa: E402

__all__ = ["linear_solve", "operator", "clear_cache"]

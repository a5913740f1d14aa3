"""Differentiable sparse solves inside JAX: write ``A(θ) x`` in JAX, get the adjoint with Mᵀ.

:func:`linear_solve` is ``x = A(θ)⁻¹ b`` as a JAX function usable under ``jax.grad``,
``jax.value_and_grad``, ``jax.jvp``, ``jax.jit`` and ``jax.vmap`` (over b). The solves run on
the host (``jax.pure_callback``), on the library's engine: the primal and tangent solves with
the preconditioner M (AMG from the assembled values by default), the reverse pass's solve
with Aᵀ and Mᵀ from the same set-up. JAX differentiates the user's product ``A(θ) x`` itself
(``jax.lax.custom_linear_solve`` composes it with the solves): nobody writes a derivative by
hand. Needs ``pip install 'krylov-adjoint[jax]'`` and float64
(``jax.config.update("jax_enable_x64", True)``; float32 inputs are refused).

* :func:`linear_solve` — the matrix-free primitive: ``matvec(θ, x)`` in JAX, optionally
  ``values(θ)`` on a fixed pattern for the preconditioner;
* :func:`assembled_solve` — A(θ) given by ``values(θ)`` on a fixed pattern; products on
  the host with the assembled matrix;
* :func:`operator` and :func:`assembled_operator` — the same operators as a
  :class:`~krylov_adjoint.ParametricOperator` on numpy arrays (``rmatvec`` by
  ``jax.linear_transpose``, the VJP and JVP by ``jax.vjp`` and ``jax.jvp``), for
  :func:`~krylov_adjoint.verify.check_problem` or an :class:`~krylov_adjoint.AdjointSolver`;
* :func:`library_errors` — the library's own exception instead of JAX's wrapper;
* :func:`clear_cache` — forget the kept solvers and their set-ups.
"""

from ..errors import require

require("jax", "jax", "krylov_adjoint.jax")

from ._errors import library_errors as library_errors  # noqa: E402
from ._operators import assembled_operator as assembled_operator  # noqa: E402
from ._operators import operator as operator  # noqa: E402
from ._solve import assembled_solve as assembled_solve  # noqa: E402
from ._solve import clear_cache as clear_cache  # noqa: E402
from ._solve import linear_solve as linear_solve  # noqa: E402

__all__ = ["linear_solve", "assembled_solve", "operator", "assembled_operator",
           "library_errors", "clear_cache"]

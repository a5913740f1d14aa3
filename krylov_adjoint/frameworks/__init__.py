"""What the JAX and PyTorch primitives share: the engine on the host, options, the cache.

A framework's linear solve ``x = A(θ)⁻¹ b`` runs on the host through
:class:`~krylov_adjoint.frameworks.host.HostSolver`: the primal solve with M and the
adjoint (transposed) solve with Mᵀ from the same set-up, both by the gradient engine
(:meth:`~krylov_adjoint.AdjointSolver.solve` and
:meth:`~krylov_adjoint.AdjointSolver.solve_transpose`). The framework itself differentiates
the user's product ``A(θ) x`` (its VJP and JVP in θ); the packages
:mod:`krylov_adjoint.jax` and :mod:`krylov_adjoint.torch` only translate arrays.
"""

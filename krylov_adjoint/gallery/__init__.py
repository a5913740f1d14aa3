"""θ-dependent model problems shared by tests, examples and benchmarks.

Every function returns a :class:`ModelProblem`: an :class:`~krylov_adjoint.AdjointProblem` with
matrix-free, vectorised callbacks (matvec, rmatvec or a symmetry declaration, VJP, JVP and an
exactly matching ``assemble``), a reference θ and, for small sizes, explicit derivatives.

- :func:`heat_1d`: one implicit-Euler step of the 1-D heat equation, SPD.
- :func:`diffusion_2d`, :func:`diffusion_3d`: −∇·(e^θ∇u) = f, per-cell or per-block θ, SPD.
- :func:`neumann_diffusion_2d`: the same with zero-flux boundaries, singular (constants).
- :func:`elasticity_2d`: plane-stress elasticity without supports, singular (rigid motions).
- :func:`helmholtz_2d`: 2-D Helmholtz with an impedance boundary, complex and indefinite.
- :func:`convection_diffusion_2d`: upwind convection–diffusion, nonsymmetric, θ in A and b.
- :func:`eit_2d`: an EIT-like many-source problem (S boundary current patterns, boundary
  potentials measured), for :meth:`~krylov_adjoint.AdjointSolver.sources_gradient`.
- :func:`convection_diffusion_matrix`: a fixed upwind convection–diffusion matrix, for
  preconditioner tests and benchmarks.
"""

from .convection import convection_diffusion_2d as convection_diffusion_2d
from .diffusion import diffusion_2d as diffusion_2d
from .diffusion import diffusion_3d as diffusion_3d
from .eit import EITModel as EITModel
from .eit import eit_2d as eit_2d
from .elasticity import elasticity_2d as elasticity_2d
from .heat import heat_1d as heat_1d
from .helmholtz import helmholtz_2d as helmholtz_2d
from .matrices import convection_diffusion_matrix as convection_diffusion_matrix
from .model import ModelProblem as ModelProblem
from .neumann import neumann_diffusion_2d as neumann_diffusion_2d

__all__ = ["ModelProblem", "heat_1d", "diffusion_2d", "diffusion_3d", "convection_diffusion_2d",
           "convection_diffusion_matrix", "neumann_diffusion_2d", "elasticity_2d",
           "helmholtz_2d", "eit_2d", "EITModel"]

"""The PETSc/MPI backend: gradients through distributed sparse linear systems.

The serial concepts with x and θ distributed over MPI ranks: each rank owns a contiguous block
of x and one of θ, callbacks see local numpy arrays (ghosted when a halo is declared), the
operator is a PETSc shell matrix, the preconditioner is built from an assembled AIJ matrix
(GAMG by default) and the adjoint solve reuses the primal set-up. Needs petsc4py and mpi4py
(``pip install 'krylov-adjoint[mpi]'``); importing this package does not, using it does.

- :class:`PetscAdjointSolver`: ``gradient``, ``objective``, ``solve``,
  ``directional_derivative``, as :class:`~krylov_adjoint.AdjointSolver`.
- :class:`DistributedOperator`, :class:`DistributedProblem`, :class:`Layout`: the problem.
- :class:`StructuredGrid`, :class:`LocalStencil`: matrix-free stencils on a PETSc DMDA.
- :func:`from_petsc_assembly`: your own distributed PETSc AIJ matrix at θ and the VJP of its
  local values (the distributed :func:`~krylov_adjoint.adapters.from_assembly`);
  :func:`petsc_affine_operator` for ``A₀ + Σ θ_k A_k`` from PETSc matrices.
- :func:`petsc_element_operator`: ``K(θ) = Σ_e s(ρ_e) K_e`` over the ranks' elements, with
  a density filter as a PETSc Mat (the distributed
  :func:`~krylov_adjoint.adapters.element_operator`).
- :class:`TaoObjective`, :func:`tao_minimize`: PETSc TAO (BLMVM, LMVM, BNCG, BNLS with the
  Hessian action) on adjoint gradients, θ distributed.
- :mod:`.gallery`: distributed diffusion (2-D/3-D) and convection–diffusion problems.
- :mod:`.verify`: collective dot-product tests and Taylor test.
- :class:`CollectiveError`: a failure on some rank, raised on every rank.
"""

from . import gallery as gallery
from . import verify as verify
from .affine import petsc_affine_operator as petsc_affine_operator
from .assembled import PetscAssembledOperator as PetscAssembledOperator
from .assembled import from_petsc_assembly as from_petsc_assembly
from .collective import CollectiveCallbackError as CollectiveCallbackError
from .collective import CollectiveError as CollectiveError
from .collective import CollectiveInputError as CollectiveInputError
from .collective import ErrorGuard as ErrorGuard
from .collective import RankFailure as RankFailure
from .dmda import StructuredGrid as StructuredGrid
from .elements import PetscElementOperator as PetscElementOperator
from .elements import petsc_element_operator as petsc_element_operator
from .layout import Layout as Layout
from .problem import DistributedOperator as DistributedOperator
from .problem import DistributedProblem as DistributedProblem
from .problem import Halo as Halo
from .result import PetscGradientResult as PetscGradientResult
from .result import PetscTangentResult as PetscTangentResult
from .solver import PetscAdjointSolver as PetscAdjointSolver
from .stencil import LocalStencil as LocalStencil
from .tao import TaoObjective as TaoObjective
from .tao import TaoResult as TaoResult
from .tao import tao_minimize as tao_minimize

__all__ = [
    "PetscAdjointSolver", "DistributedOperator", "DistributedProblem", "Layout", "Halo",
    "StructuredGrid", "LocalStencil", "PetscGradientResult", "PetscTangentResult",
    "CollectiveError", "CollectiveCallbackError", "CollectiveInputError", "ErrorGuard",
    "RankFailure", "gallery", "verify", "PetscAssembledOperator", "from_petsc_assembly",
    "petsc_affine_operator", "PetscElementOperator", "petsc_element_operator",
    "TaoObjective", "TaoResult", "tao_minimize",
]

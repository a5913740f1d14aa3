"""Second-order optimisation on adjoint gradients and Hessian actions.

* :func:`newton_cg` — inexact Newton–CG for regularised least squares: Eisenstat–Walker
  forcing terms, Steihaug truncation on negative curvature, preconditioning by the
  regularisation (prior) operator, Armijo backtracking, Gauss–Newton then full Newton. Runs
  unchanged under MPI given a global inner product ``dot``.
* :func:`steihaug_cg` — its inner truncated CG.
* :class:`EisenstatWalker`, :class:`ConstantForcing` — its forcing terms.
"""

from .cg import SteihaugResult as SteihaugResult
from .cg import steihaug_cg as steihaug_cg
from .forcing import ConstantForcing as ConstantForcing
from .forcing import EisenstatWalker as EisenstatWalker
from .minimize import SecondOrderSolver as SecondOrderSolver
from .minimize import newton_cg as newton_cg
from .result import NewtonIteration as NewtonIteration
from .result import NewtonResult as NewtonResult

__all__ = [
    "newton_cg", "NewtonResult", "NewtonIteration", "SecondOrderSolver",
    "steihaug_cg", "SteihaugResult", "EisenstatWalker", "ConstantForcing",
]

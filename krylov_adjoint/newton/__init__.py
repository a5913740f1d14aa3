"""Second-order optimisation on adjoint gradients and Hessian actions.

* :func:`newton_cg` — inexact Newton–CG for regularised least squares: Eisenstat–Walker
  forcing terms, Steihaug truncation on negative curvature, preconditioning by the
  regularisation (prior) operator, Armijo backtracking, Gauss–Newton then full Newton. Runs
  unchanged under MPI given a global inner product ``dot``.
* :func:`steihaug_cg` — its inner truncated CG.
* :func:`scipy_hessp` — a ``hessp(θ, p)`` for ``scipy.optimize.minimize`` (``trust-krylov``,
  ``Newton-CG``, ``trust-ncg``).
"""

from .cg import SteihaugResult as SteihaugResult
from .cg import steihaug_cg as steihaug_cg
from .forcing import ConstantForcing as ConstantForcing
from .forcing import EisenstatWalker as EisenstatWalker
from .minimize import SecondOrderSolver as SecondOrderSolver
from .minimize import newton_cg as newton_cg
from .result import NewtonIteration as NewtonIteration
from .result import NewtonResult as NewtonResult
from .scipy_hessp import ScipyHessp as ScipyHessp
from .scipy_hessp import scipy_hessp as scipy_hessp

__all__ = [
    "newton_cg", "NewtonResult", "NewtonIteration", "SecondOrderSolver",
    "steihaug_cg", "SteihaugResult", "EisenstatWalker", "ConstantForcing",
    "scipy_hessp", "ScipyHessp",
]

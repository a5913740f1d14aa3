"""Second-order optimisation on adjoint gradients and Hessian actions.

* :func:`steihaug_cg` — truncated CG for the Newton system ``H p = −g``.
* :class:`EisenstatWalker`, :class:`ConstantForcing` — forcing terms of inexact Newton.
"""

from .cg import SteihaugResult as SteihaugResult
from .cg import steihaug_cg as steihaug_cg
from .forcing import ConstantForcing as ConstantForcing
from .forcing import EisenstatWalker as EisenstatWalker

__all__ = ["steihaug_cg", "SteihaugResult", "EisenstatWalker", "ConstantForcing"]

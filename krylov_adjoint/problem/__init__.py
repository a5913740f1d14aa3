"""The user's problem: parametric operator A(θ), right-hand side b(θ), objective J(x, θ)."""

from .nullspace import Nullspace as Nullspace
from .objective import LeastSquaresMisfit as LeastSquaresMisfit
from .objective import LinearFunctional as LinearFunctional
from .objective import Objective as Objective
from .objective import Tikhonov as Tikhonov
from .operator import ParametricOperator as ParametricOperator
from .problem import AdjointProblem as AdjointProblem
from .rhs import RightHandSide as RightHandSide
from .sources import Sources as Sources
from .structure import Structure as Structure

__all__ = ["AdjointProblem", "ParametricOperator", "RightHandSide", "Objective",
           "LinearFunctional", "LeastSquaresMisfit", "Tikhonov", "Structure", "Nullspace",
           "Sources"]

"""The gradient engine: primal solve, adjoint solve with the transposed preconditioner."""

from .accuracy import AccuracyTarget as AccuracyTarget
from .result import GradientResult as GradientResult
from .result import HessianResult as HessianResult
from .result import TangentResult as TangentResult
from .solver import AdjointSolver as AdjointSolver
from .sources import SourcesResult as SourcesResult

__all__ = ["AdjointSolver", "GradientResult", "TangentResult", "HessianResult", "AccuracyTarget",
           "SourcesResult"]

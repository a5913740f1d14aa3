"""The gradient engine: primal solve, adjoint solve with the transposed preconditioner."""

from .engine import AdjointSolver as AdjointSolver
from .result import GradientResult as GradientResult
from .result import TangentResult as TangentResult

__all__ = ["AdjointSolver", "GradientResult", "TangentResult"]

"""Krylov methods (GMRES, CG, BiCGStab; GCRO-DR and deflated CG with a recycled space), one
stopping rule, results and reasons."""

from .recycling import RecycledSpace as RecycledSpace
from .result import ConvergenceReason as ConvergenceReason
from .result import SolveResult as SolveResult
from .solve import METHODS as METHODS
from .solve import solve as solve
from .stopping import Monitor as Monitor

__all__ = ["ConvergenceReason", "SolveResult", "solve", "METHODS", "Monitor", "RecycledSpace"]

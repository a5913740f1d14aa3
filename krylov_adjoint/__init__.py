"""krylov-adjoint: cheap, verified gradients through large sparse linear systems.

Solve ``A(θ) x = b(θ)``, then ``A(θ)ᵀ λ = ∂J/∂x``, and get
``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ·x − ∂b/∂θ)`` for the price of one extra Krylov solve, whatever
the number of parameters.

:mod:`krylov_adjoint.adapters` (assembled matrices, affine and element operators,
``scipy.optimize``) is reached as ``krylov_adjoint.adapters``; it is imported on first use,
since it loads ``scipy.optimize``. :mod:`krylov_adjoint.uq` (the low-rank Laplace
approximation of the posterior) and :mod:`krylov_adjoint.newton` (inexact Newton–CG on the
solvers' Hessian actions) are reached the same way, also on first use.
"""

import importlib
from typing import Any

from . import gallery as gallery
from . import krylov as krylov
from . import precond as precond
from . import verify as verify
from .adjoint import AccuracyTarget as AccuracyTarget
from .adjoint import AdjointSolver as AdjointSolver
from .adjoint import GradientResult as GradientResult
from .adjoint import HessianResult as HessianResult
from .adjoint import SourcesResult as SourcesResult
from .adjoint import TangentResult as TangentResult
from .errors import CallbackError as CallbackError
from .errors import ConvergenceError as ConvergenceError
from .errors import InputError as InputError
from .errors import KrylovAdjointError as KrylovAdjointError
from .errors import MissingCallbackError as MissingCallbackError
from .errors import MissingDependencyError as MissingDependencyError
from .errors import NonFiniteError as NonFiniteError
from .errors import OptimizationError as OptimizationError
from .krylov import ConvergenceReason as ConvergenceReason
from .krylov import SolveResult as SolveResult
from .problem import AdjointProblem as AdjointProblem
from .problem import LeastSquaresMisfit as LeastSquaresMisfit
from .problem import LinearFunctional as LinearFunctional
from .problem import Nullspace as Nullspace
from .problem import Objective as Objective
from .problem import ParametricOperator as ParametricOperator
from .problem import RightHandSide as RightHandSide
from .problem import Sources as Sources
from .problem import Structure as Structure
from .problem import Tikhonov as Tikhonov

__version__ = "0.1.0"

__all__ = [
    "AdjointSolver", "AccuracyTarget", "GradientResult", "TangentResult", "HessianResult",
    "SourcesResult", "Sources", "precond", "gallery",
    "verify", "adapters", "uq", "newton",
    "AdjointProblem", "ParametricOperator", "RightHandSide", "Objective", "LinearFunctional",
    "LeastSquaresMisfit", "Tikhonov", "Structure", "Nullspace", "ConvergenceReason", "SolveResult",
    "KrylovAdjointError", "InputError", "CallbackError", "MissingCallbackError",
    "NonFiniteError", "ConvergenceError", "OptimizationError", "MissingDependencyError",
    "krylov",
]

#: Submodules imported on first access (they load heavier dependencies).
_LAZY_SUBMODULES = ("adapters", "uq", "newton")


def __getattr__(name: str) -> Any:
    """``krylov_adjoint.adapters``, ``.uq`` and ``.newton``, imported on first use."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))

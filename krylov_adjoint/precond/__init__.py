"""Preconditioners with ``apply`` and ``apply_transpose``: Jacobi, ILU, LU, AMG (lazy)."""

from typing import Any

from .base import IdentityPreconditioner as IdentityPreconditioner
from .base import Preconditioner as Preconditioner
from .base import PreconditionerBase as PreconditionerBase
from .base import TransposedPreconditioner as TransposedPreconditioner
from .base import as_operator as as_operator
from .factory import PRECONDITIONERS as PRECONDITIONERS
from .factory import PreconditionerSource as PreconditionerSource
from .factory import make_preconditioner as make_preconditioner
from .factory import resolve_preconditioner as resolve_preconditioner
from .ilu import ILUPreconditioner as ILUPreconditioner
from .jacobi import JacobiPreconditioner as JacobiPreconditioner
from .lu import LUPreconditioner as LUPreconditioner
from .operator import LinearOperatorPreconditioner as LinearOperatorPreconditioner
from .projected import ProjectedPreconditioner as ProjectedPreconditioner

__all__ = ["Preconditioner", "PreconditionerBase", "IdentityPreconditioner",
           "TransposedPreconditioner", "JacobiPreconditioner", "ILUPreconditioner",
           "LUPreconditioner", "AMGPreconditioner", "LinearOperatorPreconditioner",
           "make_preconditioner", "resolve_preconditioner", "PreconditionerSource",
           "PRECONDITIONERS", "as_operator", "ProjectedPreconditioner"]


def __getattr__(name: str) -> Any:
    if name == "AMGPreconditioner":
        from .amg import AMGPreconditioner

        return AMGPreconditioner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Adapters for simulators that assemble A(θ) themselves, and for scipy.optimize.

* :func:`from_assembly` — your assembly ``θ ↦ A(θ)`` (fixed sparsity pattern) and its VJP;
  the library forms the cotangent ``λ_i x_j`` on the pattern.
* :func:`affine_operator` — ``A(θ) = A₀ + Σ_k θ_k A_k``, merged onto one pattern.
* :func:`element_operator` — ``K(θ) = Σ_e s(θ_e) K_e`` with SIMP, exponential, linear or your
  own law, and Dirichlet elimination.
* :class:`ScipyObjective` and :func:`minimize` — ``scipy.optimize.minimize`` with adjoint
  gradients, remembered evaluations and progress logging.
"""

from .affine import AffineOperator as AffineOperator
from .affine import affine_operator as affine_operator
from .affine import affine_rhs as affine_rhs
from .assembled import AssembledOperator as AssembledOperator
from .assembled import from_assembly as from_assembly
from .elements import ElementOperator as ElementOperator
from .elements import element_operator as element_operator
from .optimize import GradientSchedule as GradientSchedule
from .optimize import ScipyObjective as ScipyObjective
from .optimize import minimize as minimize
from .pattern import SparsityPattern as SparsityPattern
from .pattern import pattern_cotangent as pattern_cotangent
from .scaling import Scaling as Scaling
from .scaling import as_scaling as as_scaling
from .scaling import exponential as exponential
from .scaling import linear as linear
from .scaling import simp as simp

__all__ = [
    "AssembledOperator", "from_assembly", "SparsityPattern", "pattern_cotangent",
    "AffineOperator", "affine_operator", "affine_rhs",
    "ElementOperator", "element_operator",
    "Scaling", "as_scaling", "linear", "exponential", "simp",
    "ScipyObjective", "GradientSchedule", "minimize",
]

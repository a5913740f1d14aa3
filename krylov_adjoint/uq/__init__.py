"""Uncertainty quantification: the low-rank Laplace approximation of a Bayesian posterior.

Written against plain callables (block maps and a ``reduce_sum`` of small matrices), so
that the same code serves the serial backend and, under MPI, the PETSc one:

- :func:`randomized_eigh`: the dominant eigenpairs of the prior-preconditioned
  Gauss–Newton Hessian, ``H v = μ R v``;
- :class:`LaplacePosterior`: the Gaussian ``N(θ_MAP, (H + R)⁻¹)`` through its low-rank
  update of the prior covariance: covariance products, pointwise variance, samples;
- :func:`columnwise`: a map of single vectors made a map of blocks.
"""

from ._blocks import columnwise as columnwise
from ._eigen import RandomizedEighResult as RandomizedEighResult
from ._eigen import randomized_eigh as randomized_eigh
from ._laplace import LaplacePosterior as LaplacePosterior

__all__ = ["randomized_eigh", "RandomizedEighResult", "LaplacePosterior", "columnwise"]

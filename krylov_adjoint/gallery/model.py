"""The record returned by every gallery function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..problem import AdjointProblem

__all__ = ["ModelProblem"]

DerivativeMatrices = Callable[[np.ndarray], list[sp.csr_matrix]]
RhsDerivative = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class ModelProblem:
    """A θ-dependent model problem: ``A(θ) x = b(θ)``, an objective and a reference θ.

    Attributes
    ----------
    problem : AdjointProblem
        Operator (matrix-free callbacks with VJP, JVP and ``assemble``), right-hand side and
        objective.
    theta : ndarray, shape (P,)
        A reference parameter (float64, read-only) at which to evaluate.
    name : str
        A short readable name, e.g. for test ids and benchmark tables.
    grid : tuple of int
        The cell grid: ``x.reshape(grid)`` indexes a state ``x`` by cell, axis 0 along x.
    derivative_matrices : callable ``theta -> list of P sparse (N, N)``, or None
        The explicit ``∂A/∂θ_k``, k = 0..P−1, formed entry by entry. Only meant for small
        reference tests: it raises :class:`~krylov_adjoint.InputError` when N > 5000. None when
        A does not depend on θ.
    rhs_derivative : callable ``theta -> ndarray (N, P)``, or None
        The dense ``∂b/∂θ``, for small reference tests only (N <= 5000). None when b does not
        depend on θ.
    theta_true : ndarray, shape (P,), or None
        The parameter from which the default objective's synthetic data were made (its misfit
        is zero there); None when the caller supplied the objective.

    Examples
    --------
    >>> from krylov_adjoint.gallery import heat_1d
    >>> model = heat_1d(8)
    >>> model.n, model.n_params, model.grid
    (8, 1, (8,))
    """

    problem: AdjointProblem = field(repr=False)
    theta: np.ndarray = field(repr=False)
    name: str
    grid: tuple[int, ...]
    derivative_matrices: DerivativeMatrices | None = field(default=None, repr=False)
    rhs_derivative: RhsDerivative | None = field(default=None, repr=False)
    theta_true: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "theta", self.problem.check_theta(self.theta))
        if self.theta_true is not None:
            object.__setattr__(self, "theta_true",
                               self.problem.check_theta(self.theta_true, "theta_true"))
        if int(np.prod(self.grid)) != self.problem.n:
            raise ValueError(f"grid {self.grid} does not hold N = {self.problem.n} unknowns")

    @property
    def n(self) -> int:
        """N, the number of unknowns."""
        return self.problem.n

    @property
    def n_params(self) -> int:
        """P, the length of θ."""
        return self.problem.n_params

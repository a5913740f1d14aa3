"""Hessian actions of an adjoint solver as scipy's ``hessp(θ, p)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import refuse_complex_parameters
from ..errors import CallbackError

__all__ = ["ScipyHessp", "scipy_hessp"]


class ScipyHessp:
    """``hessp(θ, p) -> H(θ)·p`` for ``scipy.optimize.minimize``; see :func:`scipy_hessp`.

    Attributes
    ----------
    solver : object
        The solver whose Hessian action is called.
    gauss_newton : bool
        True for the Gauss–Newton action.
    n_calls : int
        Hessian actions so far (2 linear solves each).
    """

    def __init__(self, solver: Any, *, gauss_newton: bool = False) -> None:
        self.gauss_newton = bool(gauss_newton)
        self._name = ("gauss_newton_vector_product" if self.gauss_newton
                      else "hessian_vector_product")
        if not callable(getattr(solver, self._name, None)):
            raise TypeError(f"scipy_hessp: the solver ({type(solver).__name__}) has no "
                            f"{self._name}")
        self.solver = solver
        self.n_calls = 0

    def __call__(self, theta: Any, p: Any) -> np.ndarray:
        """``H(θ)·p`` as a new float64 array (scipy may keep it)."""
        refuse_complex_parameters(theta, "theta")
        refuse_complex_parameters(p, "p")
        theta = np.array(theta, dtype=np.float64, copy=True)
        p = np.array(p, dtype=np.float64, copy=True)
        self.n_calls += 1
        product = np.array(getattr(self.solver, self._name)(theta, p).product,
                           dtype=np.float64, copy=True)
        if product.shape != theta.shape:
            raise CallbackError(f"solver.{self._name}", f"returned a product of shape "
                                f"{product.shape} for theta of shape {theta.shape}")
        return product

    @property
    def solves(self) -> int:
        """Linear solves spent in Hessian actions: two per call."""
        return 2 * self.n_calls


def scipy_hessp(solver: Any, gauss_newton: bool = False) -> ScipyHessp:
    """The solver's Hessian action as ``hessp`` for ``scipy.optimize.minimize``.

    For the Newton-type methods of scipy that take ``hessp`` (``"trust-krylov"``,
    ``"trust-ncg"``, ``"Newton-CG"``, ``"trust-constr"``), with
    :class:`~krylov_adjoint.adapters.ScipyObjective` (or any ``fun(θ) -> (J, g)``) and
    ``jac=True``. Serial only: scipy's iterations use numpy's inner product.

    Parameters
    ----------
    solver : object
        With ``hessian_vector_product(θ, dθ)`` (or ``gauss_newton_vector_product``) returning
        an object whose ``.product`` is ``H·dθ``, e.g. an
        :class:`~krylov_adjoint.AdjointSolver`.
    gauss_newton : bool
        Use the Gauss–Newton Hessian (positive semi-definite) instead of the full one.

    Returns
    -------
    ScipyHessp
        A callable ``hessp(θ, p)`` that counts its calls (``n_calls``, ``solves``).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.optimize
    >>> from types import SimpleNamespace as Result
    >>> class Quartic:                  # J(θ) = Σ θ⁴/4 + θ²/2, minimum at 0
    ...     def hessian_vector_product(self, th, v):
    ...         return Result(product=(3 * th**2 + 1) * v)
    >>> hessp = scipy_hessp(Quartic())
    >>> res = scipy.optimize.minimize(lambda th: (np.sum(th**4 / 4 + th**2 / 2), th**3 + th),
    ...                               np.ones(3), jac=True, hessp=hessp, method="trust-krylov",
    ...                               options={"gtol": 1e-10})
    >>> res.success, bool(np.allclose(res.x, 0, atol=1e-8)), hessp.n_calls > 0
    (True, True, True)
    """
    return ScipyHessp(solver, gauss_newton=gauss_newton)

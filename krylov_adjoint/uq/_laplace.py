"""The low-rank Laplace approximation of a Bayesian posterior: ``N(θ_MAP, (H + R)⁻¹)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._checks import as_size
from ..errors import InputError, MissingCallbackError
from ..verify._random import RandomLike, as_generator
from ._blocks import BlockMap, CountedMap, Reduce, as_reduce, checked_block, gram
from ._eigen import RandomizedEighResult

__all__ = ["LaplacePosterior"]


class LaplacePosterior:
    r"""The Gaussian ``N(θ_MAP, Γ_post)`` with ``Γ_post = (H + R)⁻¹`` in low-rank form.

    With R the prior precision (``Γ_prior = R⁻¹``), H the Gauss–Newton Hessian of the data
    misfit at θ_MAP, and ``(μᵢ, vᵢ)`` the k dominant pairs of ``H v = μ R v`` with
    ``Vᵀ R V = I`` (from :func:`~krylov_adjoint.uq.randomized_eigh`),

    .. math:: Γ_{post} ≈ R^{-1} - V D V^T, \qquad D = \mathrm{diag}\big(μ_i/(1+μ_i)\big),

    Bui-Thanh, Ghattas, Martin & Stadler (SIAM J. Sci. Comput. 35(6), 2013, eq. (5.4)), here
    in the R-orthonormal basis: if all n pairs are kept, ``H = R V M Vᵀ R`` and
    ``V Vᵀ = R⁻¹`` give ``(H + R)(R⁻¹ − V D Vᵀ) = I`` exactly; dropping the pairs with
    ``μ ≪ 1`` drops updates of weight ``μ/(1+μ) ≈ μ``, where the data add little to the prior.

    Parameters
    ----------
    theta_map : array, shape (n_local,)
        The maximum a posteriori point (this rank's part under MPI).
    eigenvalues : array, shape (k,)
        ``μᵢ > −1`` (≥ 0 for a Gauss–Newton Hessian).
    eigenvectors : array, shape (n_local, k)
        This rank's rows of V, R-orthonormal.
    solve_R : callable
        ``Γ_prior`` applied to a block: ``solve_R(X) = R⁻¹ X`` for ``X`` of shape
        ``(n_local, m)`` (see :func:`~krylov_adjoint.uq.columnwise`).
    apply_R : callable, optional
        R applied to a block; needed by :meth:`sample` only.
    prior_variance : array, shape (n_local,), optional
        ``diag(R⁻¹)`` when known; else :meth:`pointwise_variance` estimates it.
    prior_sample : callable, optional
        ``prior_sample(rng)``: one draw of ``N(0, R⁻¹)``, shape ``(n_local,)``.
    prior_sqrt : callable, optional
        ``prior_sqrt(Z)``: ``S Z`` for a block Z of standard normal rows ``(n_local, m)``,
        with ``S Sᵀ = R⁻¹`` (e.g. ``L⁻ᵀ`` for ``R = L Lᵀ``); used when ``prior_sample`` is
        not given.
    reduce_sum : callable, optional
        The sum over the ranks of a small matrix (``comm.allreduce``); identity by default.

    Examples
    --------
    >>> import numpy as np
    >>> from krylov_adjoint.uq import LaplacePosterior, randomized_eigh

    A prior N(0, I) (R = I) and data informing two of three parameters:

    >>> H = np.diag([3.0, 0.5, 0.0])
    >>> identity = lambda X: X
    >>> pairs = randomized_eigh(lambda X: H @ X, identity, identity, 2, n_local=3, rng=0)
    >>> post = LaplacePosterior.from_eigh(np.zeros(3), pairs, identity, apply_R=identity,
    ...                                   prior_variance=np.ones(3), prior_sqrt=identity)
    >>> post.pointwise_variance()  # diag((H + R)⁻¹)
    array([0.25  , 0.6667, 1.    ])
    >>> post.eigenvalues_above(1.0)
    array([3.])
    >>> post.sample(rng=0, n=4000).std(axis=1).round(1)
    array([0.5, 0.8, 1. ])
    """

    def __init__(self, theta_map: Any, eigenvalues: Any, eigenvectors: Any,
                 solve_R: BlockMap, *, apply_R: BlockMap | None = None,  # noqa: N803
                 prior_variance: Any = None,
                 prior_sample: Callable[[np.random.Generator], Any] | None = None,
                 prior_sqrt: BlockMap | None = None, reduce_sum: Reduce | None = None) -> None:
        self.mean = _vector(theta_map, "theta_map", None)
        n_local = self.mean.size
        mu = _vector(eigenvalues, "eigenvalues", None)
        if np.any(mu <= -1.0):
            raise InputError("eigenvalues", f"must be > -1 (H + R positive definite), got "
                             f"{mu.min()}")
        V = np.array(eigenvectors, dtype=np.float64, copy=True)
        if V.shape != (n_local, mu.size):
            raise InputError("eigenvectors", f"expected shape ({n_local}, {mu.size}) "
                             f"(theta_map's length, one column per eigenvalue), got {V.shape}")
        if not np.isfinite(V).all():
            raise InputError("eigenvectors", "contains NaN or Inf")
        for array in (mu, V):
            array.flags.writeable = False
        self.eigenvalues, self.eigenvectors = mu, V
        self._solve_R = CountedMap(solve_R, "solve_R")
        self._apply_R = None if apply_R is None else CountedMap(apply_R, "apply_R")
        self._prior_variance = (None if prior_variance is None
                                else _vector(prior_variance, "prior_variance", n_local))
        for name, hook in (("prior_sample", prior_sample), ("prior_sqrt", prior_sqrt)):
            if hook is not None and not callable(hook):
                raise InputError(name, f"expected a callable, got {type(hook).__name__}")
        self._prior_sample, self._prior_sqrt = prior_sample, prior_sqrt
        self._reduce = as_reduce(reduce_sum)

    @classmethod
    def from_eigh(cls, theta_map: Any, pairs: RandomizedEighResult,
                  solve_R: BlockMap, **options: Any) -> LaplacePosterior:  # noqa: N803
        """The posterior from the pairs found by :func:`~krylov_adjoint.uq.randomized_eigh`
        (``options`` as in the constructor)."""
        return cls(theta_map, pairs.eigenvalues, pairs.eigenvectors, solve_R, **options)

    @property
    def rank(self) -> int:
        """k, the number of pairs of the low-rank update."""
        return int(self.eigenvalues.size)

    @property
    def weights(self) -> np.ndarray:
        """``dᵢ = μᵢ/(1+μᵢ)``: how much of the prior variance along ``vᵢ`` the data remove."""
        return self.eigenvalues / (1.0 + self.eigenvalues)

    def eigenvalues_above(self, threshold: float = 1.0) -> np.ndarray:
        """The ``μᵢ > threshold``: with 1, the directions the data inform more than the prior.

        If all k exceed the threshold, more pairs may be above it too: ask for a larger k.
        """
        return self.eigenvalues[self.eigenvalues > float(threshold)].copy()

    def apply_covariance(self, v: Any) -> np.ndarray:
        """``Γ_post v = R⁻¹ v − V D (Vᵀ v)``, for a vector ``(n_local,)`` or a block
        ``(n_local, m)`` (one ``solve_R`` per column, one reduction)."""
        X = self._block(v, "v")
        out = self._solve_R(X) - self.eigenvectors @ (self.weights[:, None]
                                                      * gram(self._reduce, self.eigenvectors, X))
        return out[:, 0] if np.ndim(v) == 1 else out

    def pointwise_variance(self, *, n_probes: int = 200, rng: RandomLike = None) -> np.ndarray:
        """``diag(Γ_post) = diag(R⁻¹) − Σᵢ dᵢ vᵢ²``, this rank's entries.

        ``diag(R⁻¹)`` is ``prior_variance`` when given (the result is then exact for the
        low-rank covariance). Otherwise it is estimated by probing (Bekas, Kokiopoulou & Saad,
        Appl. Numer. Math. 57, 2007): with ``n_probes`` Rademacher vectors z,
        ``Σ z ⊙ R⁻¹z / Σ z ⊙ z``, unbiased, exact for a diagonal R, with an error falling like
        ``1/√n_probes`` times the off-diagonal size of R⁻¹'s rows. ``rng`` draws the probes
        (under MPI, a stream per rank).
        """
        prior = self._prior_variance
        if prior is None:
            n_probes = as_size(n_probes, "n_probes", minimum=1)
            Z = as_generator(rng).choice([-1.0, 1.0], size=(self.mean.size, n_probes))
            prior = np.sum(Z * self._solve_R(Z), axis=1) / n_probes
        return prior - (self.eigenvectors**2) @ self.weights

    def sample(self, rng: RandomLike = None, n: int = 1) -> np.ndarray:
        """n draws of the posterior, as the columns of an ``(n_local, n)`` array.

        A prior draw ``x ~ N(0, R⁻¹)`` is mapped to ``θ_MAP + (I − V P Vᵀ R) x`` with
        ``P = diag(1 − 1/√(1+μᵢ))`` (Bui-Thanh et al. 2013, §5.2, in the R-orthonormal
        basis). With ``S = I − V P Vᵀ R`` and ``Vᵀ R V = I``,
        ``S R⁻¹ Sᵀ = R⁻¹ − V (2P − P²) Vᵀ`` and ``2P − P² = 1 − (1 − P)² = μ/(1+μ) = D``:
        the draws have exactly the covariance ``R⁻¹ − V D Vᵀ``, whatever k. Each costs one
        prior draw and one product with R (``apply_R`` is needed).

        ``rng``: None fresh, an int reproducible; under MPI give each rank its own stream.
        """
        n = as_size(n, "n", minimum=1)
        if self._apply_R is None:
            raise MissingCallbackError("sample needs apply_R (R x for the prior draws x): pass "
                                       "apply_R to LaplacePosterior")
        generator = as_generator(rng)
        n_local = self.mean.size
        if self._prior_sample is not None:
            X = np.stack([checked_block(self._prior_sample(generator), "prior_sample",
                                        (n_local,)) for _ in range(n)], axis=1)
        elif self._prior_sqrt is not None:
            Z = generator.standard_normal((n_local, n))
            X = checked_block(self._prior_sqrt(Z), "prior_sqrt", (n_local, n))
        else:
            raise MissingCallbackError("sample needs prior draws: pass prior_sample(rng) or "
                                       "prior_sqrt(Z) to LaplacePosterior")
        P = 1.0 - 1.0 / np.sqrt(1.0 + self.eigenvalues)
        VtRX = gram(self._reduce, self.eigenvectors, self._apply_R(X))
        return self.mean[:, None] + X - self.eigenvectors @ (P[:, None] * VtRX)

    def _block(self, v: Any, name: str) -> np.ndarray:
        arr = np.asarray(v, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] != self.mean.size:
            raise InputError(name, f"expected shape ({self.mean.size},) or "
                             f"({self.mean.size}, m), got {np.shape(v)}")
        return arr


def _vector(value: Any, name: str, length: int | None) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.ndim != 1 or (length is not None and arr.size != length):
        expected = "a 1-D array" if length is None else f"shape ({length},)"
        raise InputError(name, f"expected {expected}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(name, "contains NaN or Inf")
    arr.flags.writeable = False
    return arr

"""A recycled Krylov subspace: k directions kept from one solve to deflate the next.

The space is held as three sets of k rows (vectors of length N):

- ``U``, directions in the *solution* space: a solve looks for its correction in
  ``range(U) + M·K_m``;
- ``C = A U``, orthonormal (``CᵀC = I``), so that the part of the residual in ``range(C)``
  is removed by ``x += U (C r)``, ``r −= Cᵀ(C r)`` at no operator product;
- ``Ũ ≈ M⁻¹ U``, the same directions in the *preconditioned* space, used only to choose the
  next space (the harmonic Ritz problem of GCRO-DR, the Rayleigh–Ritz problem of deflated CG
  need inner products with them). It is exact while M does not change.

When A changes (a new θ) or M is set up again, :meth:`RecycledSpace.refresh` recomputes
``A U`` (k operator products, no preconditioner application) and re-orthonormalises it
(``C ← T·AU``, ``U ← T·U`` with T from the Gram matrix of ``A U``, see
:meth:`RecycledSpace.replace`; directions whose singular value falls below 1e-7 of the
largest are dropped), so
the space survives as long as it is useful: it is never wrong to keep one, only more or less
helpful. After a new set-up of M, ``Ũ`` is the old preconditioner's and only guides the next
choice.

In the gradient engine the primal and the adjoint solve each renew a space. For a symmetric
A with a symmetric M the adjoint system ``Aᵀ λ = g`` is the primal's with another right-hand
side, so one space serves and is renewed by both. For a nonsymmetric A the adjoint keeps its
own: the directions that deflate A M (right eigenvectors) are not those that deflate
``Aᵀ Mᵀ`` (the left ones), so the primal's space, transposed, would project the adjoint's
start but not speed up its iteration. The tangent solve reads the primal's space and the
second-order and output adjoint solves the adjoint's, without renewing them. Measured
iterations and times: ``docs/benchmarks_recycling.md`` (it pays with GMRES and ILU, not
with AMG).

The estimate of the iterations saved against a cold start (``iterations_saved`` in
:attr:`~krylov_adjoint.krylov.SolveResult.extra`) is ``log(‖b‖/‖r₀'‖) / log(1/ρ)``: ``‖b‖``
the residual of the cold start x = 0, ``r₀'`` that of the start actually used (the warm
start projected on the recycled space), and ``ρ`` the observed mean residual reduction per
iteration of the solve (of the previous solve when this one needed none): the iterations
the solve would have spent, at its own rate, to get from the cold start to where it began.
It counts what the start gained (warm start and projection together; ``extra`` also holds
``residual_before_projection``, the warm start's residual); the faster rate of the deflated
iteration is not counted, so the estimate is low.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse.linalg import LinearOperator

__all__ = ["RecycledSpace", "validate_recycle"]

Apply = Callable[[np.ndarray], np.ndarray]

#: Directions of ``A U`` whose squared singular value is below this share of the largest
#: are dropped (singular values below 1e-7 of the largest: nearly dependent directions).
_RANK_TOLERANCE = 1e-14


def validate_recycle(recycle: object, n: int) -> int:
    """Check the number of recycled vectors; return it as an int.

    Parameters
    ----------
    recycle : int
        0 (no recycling) or a whole number ``1 <= k < N``.
    n : int
        The number of unknowns.

    Raises
    ------
    ValueError
        Naming the value and the bound it breaks.

    Examples
    --------
    >>> validate_recycle(10, 100)
    10
    >>> validate_recycle(-1, 100)
    Traceback (most recent call last):
    ...
    ValueError: recycle must be a whole number >= 0 (0: no recycling), got -1
    >>> validate_recycle(100, 100)
    Traceback (most recent call last):
    ...
    ValueError: recycle=100 vectors must be fewer than the 100 unknowns
    """
    if (isinstance(recycle, (bool, np.bool_)) or not isinstance(recycle, (int, np.integer))
            or recycle < 0):
        raise ValueError(f"recycle must be a whole number >= 0 (0: no recycling), "
                         f"got {recycle!r}")
    if recycle >= n:
        raise ValueError(f"recycle={recycle} vectors must be fewer than the {n} unknowns")
    return int(recycle)


class RecycledSpace:
    """Up to ``k`` recycled directions, kept between solves (see the module docstring).

    Parameters
    ----------
    k : int
        The number of directions to keep, ``1 <= k < n``.
    n : int
        The length of the vectors.

    Examples
    --------
    >>> import numpy as np
    >>> space = RecycledSpace(2, 4)
    >>> space.dim
    0
    >>> A = np.diag([1.0, 2.0, 3.0, 4.0])
    >>> space.replace(np.eye(4)[:2], np.eye(4)[:2], A[:2])
    >>> space.dim, bool(np.allclose(space.C @ space.C.T, np.eye(2)))
    (2, True)
    >>> bool(np.allclose(A @ space.U.T, space.C.T))
    True
    """

    def __init__(self, k: int, n: int) -> None:
        self.k = validate_recycle(k, n)
        if self.k == 0:
            raise ValueError("a RecycledSpace needs k >= 1")
        self.n = n
        self.U = np.zeros((0, n))
        self.U_tilde = np.zeros((0, n))
        self.C = np.zeros((0, n))
        #: What the space was last made consistent with (operator, preconditioner); the
        #: caller compares it with ``is`` and calls :meth:`refresh` on a change.
        self.key: tuple[object, ...] | None = None
        #: Mean residual reduction per iteration of the last solve that iterated.
        self.rate: float | None = None
        #: Operator products spent on :meth:`refresh` in all.
        self.refresh_products = 0
        self.refreshes = 0
        self._factor: tuple[np.ndarray, tuple[np.ndarray, bool]] | None = None

    @property
    def dim(self) -> int:
        """The number of directions held now (0 before the first harvest)."""
        return self.U.shape[0]

    def clear(self) -> None:
        """Forget the directions (the counters stay)."""
        self.U, self.U_tilde, self.C = (np.zeros((0, self.n)) for _ in range(3))
        self._factor = None

    def copy(self) -> RecycledSpace:
        """An independent copy of the directions (the key is shared, not copied)."""
        twin = RecycledSpace(self.k, self.n)
        twin.U, twin.U_tilde, twin.C = self.U.copy(), self.U_tilde.copy(), self.C.copy()
        twin.key, twin.rate = self.key, self.rate
        return twin

    def replace(self, U: np.ndarray, U_tilde: np.ndarray, AU: np.ndarray) -> None:  # noqa: N803
        """New directions (rows of ``U``, ``Ũ`` and ``A U``): ``A U`` is orthonormalised,
        U and Ũ transformed alike, near-dependent directions dropped.

        The orthonormalisation is by the k × k Gram matrix, twice (as CholeskyQR2):
        ``(AU)(AU)ᵀ = V Λ Vᵀ``, ``T = Λ^{-1/2} Vᵀ`` keeps the eigenvalues above 1e-14 of the
        largest, and a second pass on ``T AU`` restores orthonormality to rounding. It costs
        two k × k Gram products (BLAS 3), 10 to 40 times less than an SVD or a Householder
        QR of the N × k block (measured, N = 16384, k = 10-20)."""
        T = self._orthonormalising(AU)
        if T is not None:
            C = T @ AU
            second = self._orthonormalising(C)
            if second is not None and second.shape[0] == T.shape[0]:
                T, C = second @ T, second @ C
        if T is None or not T.shape[0]:
            self.clear()
            return
        self.C = C
        self.U = T @ U
        self.U_tilde = T @ U_tilde
        self._factor = None

    @staticmethod
    def _orthonormalising(AU: np.ndarray) -> np.ndarray | None:  # noqa: N803
        """``T`` with ``T AU`` orthonormal (rows), or None when AU has no usable rows."""
        if AU.shape[0] == 0:
            return None
        values, vectors = np.linalg.eigh(AU @ AU.T)
        if not (np.isfinite(values).all() and values[-1] > 0):
            return None
        keep = values > _RANK_TOLERANCE * values[-1]
        return (vectors[:, keep] / np.sqrt(values[keep])).T

    def refresh(self, matvec: Apply, key: tuple[object, ...]) -> None:
        """Make ``C = A U`` hold for a new operator (or after a new preconditioner set-up):
        ``dim`` operator products, then the orthonormalisation of :meth:`replace`."""
        if self.dim:
            AU = np.array([matvec(u) for u in self.U])
            self.refresh_products += self.dim
            self.refreshes += 1
            if not np.isfinite(AU).all():
                self.clear()
            else:
                self.replace(self.U, self.U_tilde, AU)
        self.key = key

    def project(self, x: np.ndarray, r: np.ndarray) -> None:
        """The minimal-residual correction from the space: ``x += U (C r)``, ``r −= Cᵀ(C r)``
        (both in place), after which ``C r = 0``."""
        if self.dim:
            y = self.C @ r
            x += self.U.T @ y
            r -= self.C.T @ y

    def project_galerkin(self, x: np.ndarray, r: np.ndarray) -> None:
        """The Galerkin correction for a symmetric positive definite A: ``x += U E⁻¹ U r``,
        ``r −= Cᵀ E⁻¹ U r`` with ``E = U A Uᵀ`` (in place), after which ``U r = 0``, the
        start of deflated CG. A space on which A is not positive definite is dropped."""
        factor = self.galerkin_factor()
        if factor is not None:
            y = cho_solve(factor, self.U @ r)
            x += self.U.T @ y
            r -= self.C.T @ y

    def galerkin_factor(self) -> tuple[np.ndarray, bool] | None:
        """The Cholesky factor of ``E = U A Uᵀ = U Cᵀ`` (symmetrised), None without
        directions; a space on which E is not positive definite is cleared (None)."""
        if not self.dim:
            return None
        if self._factor is None or self._factor[0] is not self.U:
            E = self.U @ self.C.T
            try:
                self._factor = (self.U, cho_factor(0.5 * (E + E.T)))
            except np.linalg.LinAlgError:
                self.clear()
                return None
        return self._factor[1]

    def residual_projector(self) -> LinearOperator:
        """``I − CᵀC``, the orthogonal projector on the complement of ``range(C)`` that
        GCRO-DR applies to every image ``A M v`` (:meth:`project` applies it to r):
        symmetric, its ``rmatvec`` is its ``matvec``."""
        C = self.C

        def apply(v: np.ndarray) -> np.ndarray:
            return v - C.T @ (C @ v)

        return LinearOperator((self.n, self.n), matvec=apply, rmatvec=apply,
                              dtype=np.float64)

    def galerkin_projector(self) -> LinearOperator:
        """``Π = I − Uᵀ E⁻¹ C`` (``E = U A Uᵀ``), the projector deflated CG applies to each
        preconditioned residual (making it A-conjugate to U); ``rmatvec`` is
        ``Πᵀ = I − Cᵀ E⁻¹ U``. For a symmetric A, ``A Π = Πᵀ A`` is the deflated
        operator, symmetric."""
        factor = self.galerkin_factor()
        U, C = self.U, self.C

        def forward(v: np.ndarray) -> np.ndarray:
            return v if factor is None else v - U.T @ cho_solve(factor, C @ v)

        def transposed(w: np.ndarray) -> np.ndarray:
            return w if factor is None else w - C.T @ cho_solve(factor, U @ w)

        return LinearOperator((self.n, self.n), matvec=forward, rmatvec=transposed,
                              dtype=np.float64)

    def saved_iterations(self, before: float, after: float, final: float,
                         iterations: int) -> float:
        """The estimate of the iterations saved (module docstring) from the residual norms
        of the cold start (``before``, i.e. ‖b‖), of the start used (``after``) and at the
        end (``final``); records the observed rate for the next solve."""
        if iterations > 0 and 0 < final < after:
            self.rate = (final / after) ** (1.0 / iterations)
        rate = self.rate
        if not (after < before and rate is not None and 0 < rate < 1):
            return 0.0
        if after == 0.0:
            return float(iterations)
        return math.log(before / after) / -math.log(rate)

"""Dot-product tests: does a claimed transpose really apply the transpose?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import checked_call, readonly
from .._transpose import transpose_mismatch
from ._random import RandomLike, as_generator
from .report import CheckResult, format_number
from .space import dot, draw, norm, preconditioner_maps, space_of

__all__ = ["DotTestReport", "dot_test", "operator_dot_test", "preconditioner_dot_test"]

Apply = Callable[[np.ndarray], Any]


@dataclass(frozen=True, eq=False)
class DotTestReport:
    """Outcome of a dot-product test.

    Attributes
    ----------
    name : str
        The transposed callback under test, e.g. ``"operator.rmatvec"``.
    shape : (int, int)
        Shape ``(m, n)`` of the linear map.
    errors : ndarray
        The normalised error of each trial (see :func:`dot_test`).
    rtol : float
        The tolerance.
    error : float
        The worst error over the trials.
    passed : bool
        ``error <= rtol``.
    """

    name: str
    shape: tuple[int, int]
    errors: np.ndarray
    rtol: float
    error: float = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        errors = np.array(self.errors, dtype=np.float64)
        errors.flags.writeable = False
        object.__setattr__(self, "errors", errors)
        object.__setattr__(self, "error", float(errors.max()) if errors.size else 0.0)
        object.__setattr__(self, "passed", bool(self.error <= self.rtol))

    def summary(self) -> str:
        """One line: verdict, worst error, tolerance, trials."""
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"{self.name}: dot-product test {verdict}, worst relative error "
                f"{format_number(self.error)} (tolerance {format_number(self.rtol)}, "
                f"{self.errors.size} trials, shape {self.shape})")

    def as_check(self) -> CheckResult:
        """This report as a row of a :class:`VerificationReport`."""
        return CheckResult(self.name, self.passed, self.error, self.rtol,
                           f"dot-product test, {self.errors.size} trials", report=self)


def dot_test(matvec: Apply, rmatvec: Apply, shape: tuple[int, int], *, rng: RandomLike = None,
             trials: int = 3, rtol: float = 1e-12,
             names: tuple[str, str] = ("matvec", "rmatvec"),
             dtype: Any = np.float64) -> DotTestReport:
    """Check that ``rmatvec`` applies the transpose of ``matvec``: ⟨A u, v⟩ = ⟨u, Aᵀ v⟩.

    For random Gaussian ``u`` (length n) and ``v`` (length m), each trial computes

    ``error = |⟨A u, v⟩ − ⟨u, Aᵀ v⟩| / (‖A u‖‖v‖ + ‖u‖‖Aᵀ v‖)``

    (0 when both products vanish). By Cauchy–Schwarz each inner product is bounded by its
    term of the denominator, so the error lies in [0, 1] and does not depend on the scaling
    of A, u or v. A correct pair leaves only round-off, about ``eps·√n``; a wrong transpose
    (e.g. ``rmatvec = matvec`` for a nonsymmetric A) gives an error of order one.

    Parameters
    ----------
    matvec : callable ``u -> A @ u``
    rmatvec : callable ``v -> A.T @ v``
    shape : (int, int)
        ``(m, n)``: A maps Rⁿ to Rᵐ.
    rng : None, int or numpy.random.Generator
        Source of the random vectors (a seed makes the test reproducible).
    trials : int
        Number of random pairs; the report keeps every error and the worst.
    rtol : float
        The test passes when the worst error is at most ``rtol``.
    names : (str, str)
        Names of the two callbacks, used in the report and in errors.
    dtype : float64 or complex128
        ``complex`` for a complex A: ``rmatvec`` must then apply the conjugate transpose
        Aᴴ, the random vectors are complex and the inner products Hermitian
        (``⟨a, b⟩ = aᴴb``, compared as complex numbers).

    Returns
    -------
    DotTestReport

    Raises
    ------
    CallbackError
        When a callback raises or returns something that is not a float64 vector of the
        right length; NonFiniteError when it returns NaN or Inf.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 2.0], [0.0, 3.0]])
    >>> dot_test(lambda u: A @ u, lambda v: A.T @ v, A.shape, rng=0).passed
    True
    >>> dot_test(lambda u: A @ u, lambda v: A @ v, A.shape, rng=0).passed
    False
    >>> C = A * (1 + 2j)
    >>> dot_test(lambda u: C @ u, lambda v: C.conj().T @ v, C.shape, rng=0,
    ...          dtype=complex).passed
    True
    >>> dot_test(lambda u: C @ u, lambda v: C.T @ v, C.shape, rng=0, dtype=complex).passed
    False
    """
    m, n = (int(s) for s in shape)
    forward, transpose = names
    scalars = np.dtype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64)
    errors = dot_trials(None, lambda u: checked_call(matvec, forward, m, readonly(u),
                                                     dtype=scalars),
                        lambda v: checked_call(rmatvec, transpose, n, readonly(v),
                                               dtype=scalars),
                        lambda g: draw(g, n, scalars), lambda g: draw(g, m, scalars),
                        as_generator(rng), trials)
    return DotTestReport(transpose, (m, n), errors, float(rtol))


def dot_trials(space: Any, forward: Apply, transpose: Apply,
               draw_u: Callable[[np.random.Generator], np.ndarray],
               draw_v: Callable[[np.random.Generator], np.ndarray],
               generator: np.random.Generator, trials: int) -> np.ndarray:
    """The errors of ``trials`` dot-product tests of ``forward``/``transpose`` on random
    ``u``/``v`` (local parts), with the global inner products of ``space`` (None: local)."""
    if int(trials) < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    space = _LOCAL if space is None else space
    errors = []
    for _ in range(int(trials)):
        u, v = draw_u(generator), draw_v(generator)
        Fu, FTv = forward(u), transpose(v)
        errors.append(transpose_mismatch(hermitian(space, Fu, v), hermitian(space, u, FTv),
                                         *(norm(space, w) for w in (Fu, v, u, FTv))))
    return np.array(errors)


def hermitian(space: Any, a: np.ndarray, b: np.ndarray) -> complex | float:
    """The global inner product aᴴb (aᵀb for real vectors)."""
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        return complex(dot(space, a, b), dot(space, 1j * a, b))  # Im(aᴴb) = Re((ia)ᴴb)
    return dot(space, a, b)


class _Local:
    """Inner products of whole vectors."""

    @staticmethod
    def total(value: float) -> float:
        return float(value)


_LOCAL = _Local()


def operator_dot_test(problem: Any, theta: Any, *, rng: RandomLike = None,
                      trials: int = 3, rtol: float = 1e-12) -> DotTestReport:
    """Dot-product test of ``operator.rmatvec`` against ``operator.matvec`` at θ.

    For an operator declared ``"symmetric"`` or ``"spd"`` without its own ``rmatvec``, this
    checks that ``matvec`` really is symmetric. See :func:`dot_test` for the error. For a
    complex system, ``rmatvec`` is tested as Aᴴ with complex vectors and Hermitian inner
    products.

    Parameters
    ----------
    problem : AdjointProblem or DistributedProblem
    theta : array of shape (P,)
        θ (this rank's part under MPI; the test is then collective).
    rng, trials, rtol
        As in :func:`dot_test`; under MPI an int seeds each rank by (seed, rank).

    Returns
    -------
    DotTestReport
        Named ``"operator.rmatvec"``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> import krylov_adjoint as ka
    >>> A = sp.diags([-1.0, 3.0, -2.0], [-1, 0, 1], shape=(20, 20), format="csr")
    >>> problem = ka.AdjointProblem(A, np.ones(20), ka.LinearFunctional(np.ones(20)),
    ...                             n_params=0)
    >>> operator_dot_test(problem, np.zeros(0), rng=0).passed
    True
    """
    space = space_of(problem)
    theta = space.check_theta(theta)
    bound = space.bind(theta)
    scalars = np.dtype(getattr(problem, "dtype", np.float64))
    errors = dot_trials(space, lambda u: bound.matvec(readonly(u), check_finite=True),
                        lambda v: bound.rmatvec(readonly(v), check_finite=True),
                        lambda g: draw(g, space.n_local, scalars),
                        lambda g: draw(g, space.n_local, scalars), space.generator(rng), trials)
    return DotTestReport("operator.rmatvec", (space.n, space.n), errors, float(rtol))


def preconditioner_dot_test(M: Any, *, rng: RandomLike = None, trials: int = 3,
                            rtol: float = 1e-10, dtype: Any = None) -> DotTestReport:
    """Dot-product test of ``M.apply_transpose`` against ``M.apply``.

    The adjoint solve uses ``apply_transpose``; if it is not the transpose of ``apply``, the
    adjoint is preconditioned by the wrong operator (it may still converge, but slower, or
    not at all for CG). The default tolerance is looser than :func:`dot_test`'s because a
    preconditioner chains many operations (triangular solves, smoothers, coarse solves),
    each adding round-off.

    Parameters
    ----------
    M : Preconditioner or PetscAdjointSolver
        Anything with ``shape``, ``apply`` and ``apply_transpose``; or a PETSc solver after
        a solve, whose primal PC (``apply``/``applyTranspose``) is tested collectively.
    rng, trials
        As in :func:`dot_test`.
    rtol : float
        Tolerance on the worst normalised error.
    dtype : float64 or complex128, optional
        ``complex`` for a preconditioner of a complex system (``apply_transpose`` is then
        Mᴴ, tested with complex vectors and Hermitian inner products). Default: M's
        ``dtype`` attribute if it has one, else float64.

    Returns
    -------
    DotTestReport
        Named ``"preconditioner.apply_transpose"``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from krylov_adjoint.precond import ILUPreconditioner
    >>> A = sp.diags([-1.0, 3.0, -2.0], [-1, 0, 1], shape=(20, 20), format="csc")
    >>> preconditioner_dot_test(ILUPreconditioner(A), rng=0).passed
    True
    """
    scalars = np.dtype(getattr(M, "dtype", np.float64) if dtype is None else dtype)
    scalars = np.dtype(np.complex128 if scalars.kind == "c" else np.float64)
    space, apply, apply_transpose, n = preconditioner_maps(M, scalars)
    errors = dot_trials(space, apply, apply_transpose, lambda g: draw(g, n, scalars),
                        lambda g: draw(g, n, scalars), space.generator(rng), trials)
    return DotTestReport("preconditioner.apply_transpose", (space.n, space.n), errors,
                         float(rtol))

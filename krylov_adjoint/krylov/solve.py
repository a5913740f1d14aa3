"""One entry point for every Krylov method: ``solve(A, b, method=..., M=..., rtol=..., ...)``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import as_vector
from ..errors import ConvergenceError, InputError
from ._callbacks import Apply, guarded
from ._norm import norm
from ._run import KrylovRun
from .bicgstab import bicgstab
from .cg import cg
from .cocg import cocg
from .deflated_cg import deflated_cg
from .gcrodr import gcrodr
from .gmres import gmres
from .recycling import RecycledSpace
from .result import ConvergenceReason, SolveResult
from .stopping import Monitor, stopping_target, validate_restart, validate_tolerances

__all__ = ["solve", "METHODS"]

METHODS = {"gmres": gmres, "cg": cg, "bicgstab": bicgstab, "cocg": cocg}

#: The methods that recycle a space, and their recycled versions. BiCGStab builds no
#: basis from which to choose directions: it does not recycle (use GMRES).
RECYCLING_METHODS = {"gmres": gcrodr, "cg": deflated_cg}

# Right-hand sides whose norm lies outside this range are scaled (see _power_of_two_scale).
_SAFE_RHS = (1e-100, 1e100)


def solve(A: Any, b: Any, *, method: str = "gmres", M: Any = None, x0: Any = None,
          rtol: float = 1e-5, atol: float = 0.0, maxiter: int | None = None,
          restart: int = 30, monitor: Monitor | None = None, raise_on_failure: bool = False,
          labels: tuple[str, str] = ("A", "M"), phase: str = "solve",
          recycle: RecycledSpace | None = None) -> SolveResult:
    """Solve ``A x = b`` with a right-preconditioned Krylov method.

    Parameters
    ----------
    A : scipy.sparse matrix, ndarray or scipy LinearOperator, shape (N, N)
        The operator; only ``A @ v`` is used. Pass ``A.T`` (and ``M.T``) for a transposed solve
        (``A.H`` and the conjugate-transposed M for a complex one). A LinearOperator's
        ``matvec`` gets a read-only vector and must return a new (or unchanging) float64
        array of shape (N,), or complex128 for a complex solve. The solve is complex when A
        (its dtype), b or x0 is complex: the inner products are then Hermitian.
    b : array of shape (N,)
    method : {"gmres", "cg", "bicgstab", "cocg"}
        ``"cg"`` requires A and M symmetric positive definite (Hermitian for complex data);
        ``"cocg"`` A and M complex symmetric (Aᵀ = A); for both, a preconditioner whose
        ``is_symmetric`` is False (e.g. an AMG F-cycle) is refused.
    M : Preconditioner, LinearOperator or sparse matrix, optional
        Right preconditioner M ≈ A⁻¹, applied through ``M.apply`` (or ``M.matvec``). Its
        input is read-only: a preconditioner must return ``M @ r`` as a float64 array of
        shape (N,), not modify ``r`` in place.
    x0 : array of shape (N,), optional
        Initial guess (not modified).
    rtol, atol : float
        Stop when ``‖b − A x‖₂ ≤ max(rtol·‖b‖₂, atol)``, the *true* (unpreconditioned) residual,
        as in scipy. The final residual is always computed explicitly. Any real scalars
        (Python or numpy) with ``0 <= rtol < 1`` and ``atol >= 0``, not both 0.
    maxiter : int, optional
        Maximum number of iterations (default ``min(10 N, 10000)``, at least 100).
    restart : int
        GMRES restart length, a positive integer.
    monitor : callable ``(phase, iteration, residual_norm)``, optional
        Called at every iteration, including iteration 0; ``phase`` is the ``phase`` argument.
    raise_on_failure : bool
        Raise :class:`~krylov_adjoint.ConvergenceError` when the solve does not converge;
        by default the result is returned with its reason.
    labels : (str, str)
        Names of A and M used in error messages (e.g. ``("operator.rmatvec",
        "preconditioner.apply_transpose")``).
    phase : str
        Name of this solve, passed to ``monitor`` and to a
        :class:`~krylov_adjoint.ConvergenceError`.
    recycle : RecycledSpace, optional
        A recycled space (:mod:`~krylov_adjoint.krylov.recycling`), consistent with this A
        (call its ``refresh`` after A or M changed): the solve starts from x0 projected on
        it, deflates it (GCRO-DR for ``"gmres"``, deflated CG for ``"cg"``; ``"bicgstab"``
        is refused) and leaves the next space in it. The result's ``extra`` then holds
        ``recycled_dimension`` and ``iterations_saved`` (against a cold start, the estimate
        defined there).

    Returns
    -------
    SolveResult

    Raises
    ------
    CallbackError
        Naming ``labels[0]`` or ``labels[1]`` when the operator or the preconditioner returns
        None, a non-array, a wrong shape or a dtype other than the solve's (float64, or
        complex128 or float64 for a complex solve),
        modifies its input, or raises (the exception is chained).
    NonFiniteError
        When a product turns NaN or Inf (naming the operator or the preconditioner).
    ConvergenceError
        With ``raise_on_failure=True``, when the solve does not converge.

    Notes
    -----
    A zero right-hand side (every entry 0) returns x = 0 without iterating. A right-hand
    side whose norm is below 1e-100 or above 1e100 is solved as ``A (x/s) = b/s`` with ``s``
    a power of two near ``‖b‖`` (exact), so that e.g. ``1e-170·A x = 1e-170·b`` is solved
    rather than mistaken for ``b = 0``; norms are computed without underflow or overflow,
    and everything reported (residuals, target, monitor, x) is in the units of the system
    given. An unconverged solve whose residual stays far above the target says in its
    message that A may be singular with an inconsistent right-hand side.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> result = solve(A, np.ones(50), method="cg", rtol=1e-10)
    >>> result.reason.name, bool(np.linalg.norm(A @ result.x - 1) <= 1e-10 * np.sqrt(50))
    ('CONVERGED_RTOL', True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    field = _field(A, b, x0)
    matvec, n = _as_matvec(A, labels[0], field)
    b = as_vector(b, "b", n, dtype=field, callback=False)
    maxiter = validate_tolerances(rtol, atol, maxiter, n)
    rtol, atol = float(rtol), float(atol)
    restart = validate_restart(restart)
    precond = _as_precond(M, n, labels[1], field)
    if method in ("cg", "cocg") and getattr(M, "is_symmetric", None) is False:
        why = getattr(M, "asymmetry", "") or "it is not a symmetric map"
        raise InputError(labels[1], f"conjugate gradients need a symmetric preconditioner, "
                                    f"and this one is not ({why}): use method='gmres', or a "
                                    "symmetric configuration (for AMG a V- or W-cycle with "
                                    "symmetric smoothing)")
    if recycle is not None and method not in RECYCLING_METHODS:
        raise InputError("recycle", f"method={method!r} does not recycle a Krylov space; "
                                    f"use one of {sorted(RECYCLING_METHODS)}")
    if not b.any():
        run = KrylovRun(method, 0.0, atol, rtol, atol, monitor, labels, phase)
        run.record(0.0)
        return run.finish(np.zeros(n, dtype=field), ConvergenceReason.CONVERGED_ZERO_RHS,
                          "zero right-hand side: x = 0, no iteration")
    rhs_norm = norm(b)
    scale = _power_of_two_scale(rhs_norm)
    run = KrylovRun(method, rhs_norm, stopping_target(rhs_norm, rtol, atol), rtol, atol,
                    monitor, labels, phase, scale=scale)
    if scale != 1.0:
        b = b / scale
    if x0 is None:
        x = np.zeros(n, dtype=field)
        r = b.copy()
    else:
        x = np.array(as_vector(x0, "x0", n, dtype=field, callback=False), dtype=field,
                     copy=True)
        if scale != 1.0:
            x /= scale
        r = b - matvec(x)
    rnorm = norm(r)
    run.check_finite(rnorm, product=r)
    if recycle is not None:
        return _recycled(matvec, b, x, r, rnorm, run, precond, maxiter, restart, recycle,
                         method, raise_on_failure, phase)
    run.record(rnorm)
    if rnorm <= run.target:
        return run.finish(x, run.converged_reason, "the initial guess already satisfies the "
                                                   "tolerance")
    result = METHODS[method](matvec, b, x, r, run, precond=precond, maxiter=maxiter,
                             restart=restart)
    if raise_on_failure and not result.converged:
        raise ConvergenceError(result, phase)
    return result


def _recycled(matvec: Apply, b: np.ndarray, x: np.ndarray, r: np.ndarray, rnorm: float,
              run: KrylovRun, precond: Apply, maxiter: int, restart: int,
              space: RecycledSpace, method: str, raise_on_failure: bool,
              phase: str) -> SolveResult:
    """The recycled solve: project the start on the space, iterate, report the savings."""
    if space.n != b.size:
        raise InputError("recycle", f"the recycled space has vectors of length {space.n}, "
                                    f"the system {b.size} unknowns")
    dim = space.dim
    if method == "cg":
        space.project_galerkin(x, r)
        dim = space.dim  # a space on which A is not positive definite is dropped
    else:
        space.project(x, r)
    projected = norm(r)
    run.check_finite(projected, product=r)
    run.record(projected)
    if projected <= run.target:
        result = run.finish(x, run.converged_reason,
                            "the initial guess projected on the recycled space already "
                            "satisfies the tolerance")
    elif method == "cg":
        result = deflated_cg(matvec, b, x, r, run, precond=precond, maxiter=maxiter,
                             space=space)
    else:
        result = gcrodr(matvec, b, x, r, run, precond=precond, maxiter=maxiter,
                        restart=restart, space=space)
    saved = space.saved_iterations(run.rhs_norm, projected * run.scale,
                                   result.residual_norm, result.iterations)
    result.extra.update(recycled_dimension=dim, iterations_saved=saved,
                        residual_before_projection=rnorm * run.scale)
    if raise_on_failure and not result.converged:
        raise ConvergenceError(result, phase)
    return result


def _power_of_two_scale(rhs_norm: float) -> float:
    """1, or the power of two nearest ``‖b‖`` when ``‖b‖`` is outside ``[1e-100, 1e100]``.

    The methods then iterate on ``A (x/s) = b/s``, whose residuals are of order one, so that
    their inner products (e.g. CG's rᵀz, BiCGStab's r̂ᵀr) neither underflow nor overflow:
    ``solve(1e-170 * A, 1e-170 * b)`` is solved, not taken for a zero right-hand side. A power
    of two divides and multiplies exactly.
    """
    if _SAFE_RHS[0] <= rhs_norm <= _SAFE_RHS[1]:
        return 1.0
    return math.ldexp(1.0, math.frexp(rhs_norm)[1])


def _field(A: Any, b: Any, x0: Any) -> np.dtype:
    """complex128 when the operator (its dtype), b or x0 is complex, else float64."""
    complex_ = any(getattr(v, "dtype", None) is not None and np.dtype(v.dtype).kind == "c"
                   for v in (A, b, x0)) or np.iscomplexobj(b) or np.iscomplexobj(x0)
    return np.dtype(np.complex128 if complex_ else np.float64)


def _as_matvec(A: Any, label: str, field: np.dtype) -> tuple[Apply, int]:
    """``v -> A @ v`` and N. A user operator's products are guarded (read-only input, output
    checked, see :func:`._callbacks.guarded`); a matrix's product is the library's own."""
    if sp.issparse(A) or isinstance(A, np.ndarray):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise InputError("A", f"expected a square matrix, got shape {A.shape}")
        matrix = A
        return (lambda v: matrix @ v), A.shape[0]
    if isinstance(A, spla.LinearOperator):
        if A.shape[0] != A.shape[1]:
            raise InputError("A", f"expected a square operator, got shape {A.shape}")
        return guarded(A.matvec, label, A.shape[0], "A @ x", field), A.shape[0]
    raise InputError("A", "expected a scipy.sparse matrix, an ndarray or a scipy "
                          f"LinearOperator, got {type(A).__name__}")


def _as_precond(M: Any, n: int, label: str, field: np.dtype) -> Apply:
    """``r -> M @ r``: a preconditioner's ``apply`` or a LinearOperator's ``matvec``, guarded
    (read-only input, output checked), a sparse matrix's product, or a copy when M is None."""
    if M is None:
        return lambda v: v.copy()
    shape = getattr(M, "shape", None)
    if shape != (n, n):
        raise InputError("M", f"expected shape ({n}, {n}), got {shape}")
    if hasattr(M, "apply"):
        return guarded(M.apply, label, n, "M @ r", field)
    if isinstance(M, spla.LinearOperator):
        return guarded(M.matvec, label, n, "M @ r", field)
    if sp.issparse(M):
        if field.kind != "c":
            _refuse_complex(M, "M")
        return lambda v: M @ v
    raise InputError("M", "expected a Preconditioner (apply/apply_transpose), a scipy "
                          f"LinearOperator or a sparse matrix, got {type(M).__name__}")


def _refuse_complex(matrix: Any, name: str) -> None:
    if np.iscomplexobj(matrix):
        raise InputError(name, f"complex matrices are not supported (dtype {matrix.dtype}): "
                               "the Krylov methods here are real")

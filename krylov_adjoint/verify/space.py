"""Where the checks run: a problem's callbacks, random vectors and global inner products.

Every check of :mod:`krylov_adjoint.verify` is written once over a *space*: this rank's
parts of x and θ as numpy arrays, the problem bound at θ (callbacks checked by the shared
:class:`~krylov_adjoint.problem.bound.BoundProblem`), inner products reduced over the ranks,
and a collective checkpoint. :func:`space_of` picks the serial space for an
:class:`~krylov_adjoint.AdjointProblem` and the PETSc one (in
:mod:`krylov_adjoint.backends.petsc.vecs`) for a ``DistributedProblem``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .._checks import checked_call, readonly
from ..problem.problem import AdjointProblem
from ._random import RandomLike, as_generator

Apply = Callable[[np.ndarray], np.ndarray]

__all__ = ["Space", "SerialSpace", "space_of", "preconditioner_maps"]


class Space(Protocol):
    """What a check needs from a backend (all methods collective on PETSc).

    ``n``, ``n_params`` are global sizes; ``n_local``, ``params_local`` this rank's.
    ``bind(θ)`` returns the problem at θ with ``matvec``, ``rmatvec``, ``operator_vjp``,
    ``operator_jvp``, ``b``, ``rhs_vjp``, ``rhs_jvp``, ``objective_value`` (global),
    ``objective_grad_x`` and ``objective_grad_theta`` on local arrays, and the second-order
    ``operator_vjp_jvp``, ``operator_jvp_transpose``, ``rhs_vjp_jvp`` and
    ``objective_second(name, x, v)``; a failing callback raises on every rank, naming it.
    """

    problem: Any
    n: int
    n_params: int
    n_local: int
    params_local: int

    def generator(self, rng: RandomLike) -> np.random.Generator:
        """This rank's random generator: None fresh, an int reproducible."""

    def check_theta(self, theta: Any, name: str = "theta") -> np.ndarray:
        """This rank's part of θ, checked (a clear error on every rank)."""

    def bind(self, theta: np.ndarray) -> Any:
        """The problem at θ."""

    def total(self, value: float) -> float:
        """The sum of a local number over the ranks."""

    def checked_preconditioner(self, theta: np.ndarray, solver: Any, spec: Any) -> Any:
        """The preconditioner :func:`check_problem` tests (given, else the solver's)."""

    def new_solver(self, like: Any, preconditioner: Any, rtol: float) -> Any:
        """A fresh solver of this backend with ``like``'s method and the given rtol."""


class SerialSpace:
    """The space of a serial :class:`~krylov_adjoint.AdjointProblem` (whole vectors).

    Examples
    --------
    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> problem = ka.AdjointProblem(np.eye(2), np.ones(2), ka.LinearFunctional(np.ones(2)),
    ...                             n_params=0)
    >>> space = SerialSpace(problem)
    >>> space.bind(space.check_theta([])).matvec(np.array([1.0, 2.0]))
    array([1., 2.])
    """

    def __init__(self, problem: AdjointProblem) -> None:
        self.problem = problem
        self.n = self.n_local = problem.n
        self.n_params = self.params_local = problem.n_params

    def generator(self, rng: RandomLike) -> np.random.Generator:
        return as_generator(rng)

    def check_theta(self, theta: Any, name: str = "theta") -> np.ndarray:
        return self.problem.check_theta(theta, name)

    def bind(self, theta: np.ndarray) -> Any:
        return self.problem.bind(theta)

    def total(self, value: float) -> float:
        return float(value)

    def checked_preconditioner(self, theta: np.ndarray, solver: Any, spec: Any) -> Any:
        """The preconditioner object given, the solver's (set up, or set up at θ the same
        way), or one of kind ``spec`` set up at θ; None for none."""
        from ..precond.factory import make_preconditioner

        options: dict[str, Any] = {}
        if spec is None and solver is not None:
            backend = solver.backend
            if backend.M is not None:
                return backend.M
            spec, options = backend.spec, backend.options
        if spec is None or (isinstance(spec, str) and spec == "none"):
            return None
        if hasattr(spec, "apply") and hasattr(spec, "apply_transpose"):
            return spec
        return make_preconditioner(spec, self.problem.assemble(theta), **options)

    def new_solver(self, like: Any, preconditioner: Any, rtol: float) -> Any:
        from ..adjoint.solver import AdjointSolver

        # the Taylor test judges the gradient itself: the engine's own check is off
        kwargs: dict[str, Any] = {"preconditioner": "none" if preconditioner is None
                                  else preconditioner, "rtol": rtol, "atol": 0.0,
                                  "check_gradient": False}
        if like is not None:
            kwargs.update(method=like.method, restart=like.restart, rtol=min(like.rtol, rtol))
        return AdjointSolver(self.problem, **kwargs)


def space_of(problem: Any) -> Any:
    """The space of a problem: serial for an ``AdjointProblem``, PETSc for a
    ``DistributedProblem`` (imported only then), else a ``TypeError``."""
    if isinstance(problem, AdjointProblem):
        return SerialSpace(problem)
    if "krylov_adjoint.backends.petsc.problem" in sys.modules:  # else none can exist
        from ..backends.petsc.problem import DistributedProblem
        from ..backends.petsc.vecs import VecSpace

        if isinstance(problem, DistributedProblem):
            return VecSpace(problem)
    raise TypeError(f"problem must be an AdjointProblem or a DistributedProblem, got "
                    f"{type(problem).__name__}")


def preconditioner_maps(M: Any, dtype: Any = np.float64) -> tuple[Any, Apply, Apply, int]:
    """``(space, apply, apply_transpose, local size)`` of a preconditioner: a serial
    ``Preconditioner`` (checked calls; complex outputs accepted for ``dtype=complex``), or a
    ``PetscAdjointSolver``'s primal PC."""
    if "krylov_adjoint.backends.petsc.solver" in sys.modules:
        from ..backends.petsc.solver import PetscAdjointSolver
        from ..backends.petsc.vecs import VecSpace

        if isinstance(M, PetscAdjointSolver):
            space = VecSpace(M.problem)
            return (space, *space.preconditioner_maps(M.primal_ksp.getPC()), space.n_local)
    for attribute in ("shape", "apply", "apply_transpose"):
        if not hasattr(M, attribute):
            raise TypeError(f"the preconditioner has no {attribute!r}: expected an object "
                            f"with shape, apply and apply_transpose, got {type(M).__name__}")
    n = int(M.shape[0])
    space = _WholeVectors(n)

    def apply(u: np.ndarray) -> np.ndarray:
        return checked_call(M.apply, "preconditioner.apply", n, readonly(u), dtype=dtype)

    def apply_transpose(v: np.ndarray) -> np.ndarray:
        return checked_call(M.apply_transpose, "preconditioner.apply_transpose", n,
                            readonly(v), dtype=dtype)

    return space, apply, apply_transpose, n


class _WholeVectors:
    """The space of whole vectors of length n, without a problem."""

    def __init__(self, n: int) -> None:
        self.n = self.n_local = n

    def generator(self, rng: RandomLike) -> np.random.Generator:
        return as_generator(rng)

    def total(self, value: float) -> float:
        return float(value)


def draw(generator: np.random.Generator, n: int, field: Any = np.float64) -> np.ndarray:
    """A standard normal vector (real and imaginary parts each standard normal if complex)."""
    if np.dtype(field).kind == "c":
        return generator.standard_normal(n) + 1j * generator.standard_normal(n)
    return generator.standard_normal(n)


def state_dtype(space: Any) -> np.dtype:
    """The dtype of x-like vectors of a space's problem: complex128 for a complex system."""
    return np.dtype(getattr(getattr(space, "problem", None), "dtype", np.float64))


def dot(space: Any, a: np.ndarray, b: np.ndarray) -> float:
    """The global (real) inner product of two local parts: Re(aᴴb) for complex vectors."""
    return space.total(float(np.vdot(a, b).real))


def norm(space: Any, a: np.ndarray) -> float:
    """The global 2-norm of a local part."""
    return float(np.sqrt(max(dot(space, a, a), 0.0)))

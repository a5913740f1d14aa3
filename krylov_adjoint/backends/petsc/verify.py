"""Verification of distributed problems: the library's one set of checks, re-exported.

:mod:`krylov_adjoint.verify` accepts a :class:`DistributedProblem` (and a
:class:`PetscAdjointSolver`) wherever it accepts their serial counterparts: the checks are
then collective, use global inner products, and return the same report on every rank. This
module keeps the names it has always offered, plus :func:`adjoint_preconditioner_test`, which
inspects the PETSc mechanics of the adjoint solve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...verify import (
    check_problem,
    objective_gradient_test,
    operator_dot_test,
    operator_jvp_test,
    operator_vjp_test,
    preconditioner_dot_test,
    rhs_jvp_test,
    rhs_vjp_test,
    taylor_test_solver,
)
from .vecs import VecSpace

__all__ = ["operator_dot_test", "operator_vjp_test", "operator_jvp_test", "rhs_vjp_test",
           "rhs_jvp_test", "objective_gradient_test", "preconditioner_dot_test",
           "adjoint_preconditioner_test", "taylor_test_solver", "check_problem"]


def adjoint_preconditioner_test(solver: Any, *, rng: Any = None, trials: int = 3
                                ) -> np.ndarray:
    """``‖M_adj v − Mᵀ v‖ / ‖Mᵀ v‖`` for random v: how close the adjoint solve's PC is to the
    exact transpose of the primal PC (0 up to round-off for ``"shared"`` and
    ``"transpose"``; small but not zero for ``"explicit"``). Collective; after a gradient.

    Parameters
    ----------
    solver : PetscAdjointSolver
        After a gradient (both PCs set up).
    rng : None, int or numpy.random.Generator
        None draws fresh vectors; an int seeds each rank by (seed, rank).
    trials : int

    Returns
    -------
    ndarray
        The relative gap of each trial (the same on every rank).
    """
    space = VecSpace(solver.problem)
    generator = space.generator(rng)
    transpose = space.preconditioner_maps(solver.primal_ksp.getPC())[1]
    adjoint = space.preconditioner_maps(solver.adjoint_ksp.getPC())[0]
    out = []
    for _ in range(int(trials)):
        v = generator.standard_normal(space.n_local)
        want = transpose(v)
        gap = adjoint(v) - want
        out.append(np.sqrt(space.total(gap @ gap) / space.total(want @ want)))
    return np.array(out)

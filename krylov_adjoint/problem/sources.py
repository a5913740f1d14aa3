"""Many sources: S right-hand sides bₛ(θ) and S objectives Jₛ(θ, xₛ) for one operator A(θ).

Electrical impedance tomography, seismic and acoustic imaging sum a misfit over sources (a
current pattern, a shot): ``J(θ) = Σₛ Jₛ(θ, xₛ)`` with ``A(θ) xₛ = bₛ(θ)``, the same A for
all of them. :class:`Sources` holds the S pairs (bₛ, Jₛ); the solvers'
``sources_gradient(theta, sources)`` solves them all on one preconditioner set-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._checks import real_array
from ..errors import InputError
from .objective import Objective
from .rhs import RightHandSide

__all__ = ["Sources"]


class Sources:
    """S right-hand sides and S objectives sharing one operator A(θ).

    Parameters
    ----------
    rhs : array of shape (N, S), or a sequence of S right-hand sides
        Column s is bₛ (fixed, as EIT current patterns and seismic shots usually are); or one
        :class:`RightHandSide` (or 1-D array) per source, for bₛ(θ) with its own ``vjp``.
        On PETSc: this rank's rows (shape (n_local, S)), as for a single right-hand side.
    objectives : sequence of S Objective
        Jₛ(θ, xₛ): each source's misfit against its own data (e.g. a
        :class:`~krylov_adjoint.LeastSquaresMisfit` of the potentials measured for that
        source). J = Σₛ Jₛ; a term on θ alone (a regularisation) belongs to one of them.

    Raises
    ------
    InputError
        When the numbers of right-hand sides and objectives differ, or a right-hand side or
        an objective is unusable; the message names the source index.

    Examples
    --------
    Two sources on ``A(θ) = diag(θ)``:

    >>> import numpy as np
    >>> import krylov_adjoint as ka
    >>> B = np.array([[1.0, 0.0], [1.0, 2.0], [0.0, 1.0]])
    >>> sources = ka.Sources(B, [ka.LinearFunctional(np.ones(3))] * 2)
    >>> len(sources), sources.fixed
    (2, True)
    >>> sources.rhs[1].value(None)
    array([0., 2., 1.])
    """

    def __init__(self, rhs: Any, objectives: Sequence[Objective]) -> None:
        self.rhs: tuple[RightHandSide, ...] = _right_hand_sides(rhs)
        if isinstance(objectives, Objective):
            raise InputError("sources.objectives", "expected a sequence of one Objective per "
                                                   "source, got a single Objective")
        objectives = tuple(objectives)
        if len(objectives) != len(self.rhs):
            raise InputError("sources", f"{len(self.rhs)} right-hand sides (columns) but "
                                        f"{len(objectives)} objectives: give one objective "
                                        "per source")
        for s, objective in enumerate(objectives):
            if not isinstance(objective, Objective):
                raise InputError(f"sources.objectives[{s}]", "expected an Objective, got "
                                                             f"{type(objective).__name__}")
        self.objectives: tuple[Objective, ...] = objectives

    def __len__(self) -> int:
        return len(self.rhs)

    @property
    def fixed(self) -> bool:
        """True when no right-hand side depends on θ."""
        return not any(r.depends_on_theta for r in self.rhs)

    def check_length(self, n_local: int) -> str | None:
        """Why a fixed right-hand side does not have ``n_local`` entries, or None (local:
        on PETSc each rank checks its rows and the solver agrees on the answer)."""
        for s, r in enumerate(self.rhs):
            if not r.depends_on_theta and r.value(None).shape != (n_local,):
                return (f"sources.rhs[{s}]: expected {n_local} entries (the operator's "
                        f"rows here), got shape {r.value(None).shape}")
        return None

    def single(self, index: int) -> tuple[RightHandSide, Objective]:
        """(bₛ, Jₛ) of source ``index``: e.g. ``AdjointProblem(op, *sources.single(s),
        n_params=P)`` is that source alone.

        Examples
        --------
        >>> import numpy as np
        >>> import krylov_adjoint as ka
        >>> sources = ka.Sources(np.eye(3)[:, :2], [ka.LinearFunctional(np.ones(3))] * 2)
        >>> rhs, objective = sources.single(1)
        >>> rhs.value(None)
        array([0., 1., 0.])
        """
        if isinstance(index, bool) or not isinstance(index, int | np.integer) \
                or not 0 <= index < len(self):
            raise InputError("index", f"expected an integer 0 <= index < {len(self)}, got "
                                      f"{index!r}")
        return self.rhs[index], self.objectives[index]

    def __repr__(self) -> str:
        kind = "fixed" if self.fixed else "θ-dependent"
        return f"<Sources: {len(self)} sources, {kind} right-hand sides>"


def _right_hand_sides(rhs: Any) -> tuple[RightHandSide, ...]:
    """One :class:`RightHandSide` per source from a 2-D array or a sequence."""
    if isinstance(rhs, RightHandSide):
        raise InputError("sources.rhs", "expected an (N, S) array or a sequence of one "
                                        "right-hand side per source, got a single "
                                        "RightHandSide")
    if isinstance(rhs, np.ndarray):
        block = real_array(rhs, "sources.rhs")
        if block.ndim != 2:
            raise InputError("sources.rhs", f"expected an (N, S) array, one column per "
                                            f"source, got shape {block.shape}")
        items: list[Any] = [np.ascontiguousarray(block[:, s]) for s in range(block.shape[1])]
    else:
        try:
            items = list(rhs)
        except TypeError:
            raise InputError("sources.rhs", "expected an (N, S) array or a sequence of "
                                            f"right-hand sides, got {type(rhs).__name__}"
                             ) from None
    if not items:
        raise InputError("sources.rhs", "no source: expected at least one right-hand side")
    out = []
    for s, item in enumerate(items):
        if isinstance(item, RightHandSide):
            out.append(item)
            continue
        try:
            out.append(RightHandSide(item))
        except (ValueError, TypeError) as exc:
            raise InputError(f"sources.rhs[{s}]", str(exc)) from exc
    return tuple(out)

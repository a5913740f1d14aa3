"""Results of the PETSc backend: the serial records, with distributed vectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...adjoint.result import GradientResult, TangentResult
from .layout import Layout

__all__ = ["PetscGradientResult", "PetscTangentResult"]


@dataclass(frozen=True)
class PetscGradientResult(GradientResult):
    """A :class:`~krylov_adjoint.GradientResult` whose vectors are distributed.

    ``objective`` is the global J (the same on every rank). ``gradient``, ``x`` and
    ``adjoint`` are this rank's *owned parts* (read-only views of the PETSc vectors below),
    and the solves' ``SolveResult.x`` are local copies.

    Attributes
    ----------
    gradient_vec, x_vec, adjoint_vec : petsc4py.PETSc.Vec
        dJ/dθ on θ's layout, x and λ on x's layout; owned by this result.
    theta_layout, x_layout : Layout
    """

    gradient_vec: Any = field(default=None, repr=False)
    x_vec: Any = field(default=None, repr=False)
    adjoint_vec: Any = field(default=None, repr=False)
    theta_layout: Layout | None = field(default=None, repr=False)
    x_layout: Layout | None = field(default=None, repr=False)

    def gather_gradient(self, root: int | None = 0) -> np.ndarray | None:
        """The whole dJ/dθ (PETSc's global ordering) on ``root``, None elsewhere (collective).

        With ``root=None`` every rank gets it.
        """
        return self.theta_layout.gather(self.gradient, root)  # type: ignore[union-attr]

    def gather_x(self, root: int | None = 0) -> np.ndarray | None:
        """The whole primal solution on ``root`` (collective)."""
        return self.x_layout.gather(self.x, root)  # type: ignore[union-attr]

    def gather_adjoint(self, root: int | None = 0) -> np.ndarray | None:
        """The whole adjoint solution on ``root`` (collective)."""
        return self.x_layout.gather(self.adjoint, root)  # type: ignore[union-attr]

    @property
    def gradient_norm(self) -> float:
        """‖dJ/dθ‖₂ over all ranks (collective)."""
        return float(self.gradient_vec.norm())

    @property
    def n_params(self) -> int:
        """P over all ranks."""
        return int(self.gradient_vec.getSize())

    def destroy(self) -> None:
        """Free the PETSc vectors held by this result (the arrays become invalid)."""
        for vec in (self.gradient_vec, self.x_vec, self.adjoint_vec):
            if vec is not None:
                vec.destroy()


@dataclass(frozen=True)
class PetscTangentResult(TangentResult):
    """A :class:`~krylov_adjoint.TangentResult` with local ``x`` and ``tangent``.

    ``objective`` and ``derivative`` are global (the same on every rank).
    """

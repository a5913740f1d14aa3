"""Results of the PETSc backend: the serial records, with distributed vectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...adjoint.result import GradientResult, HessianResult, TangentResult
from .layout import Layout

__all__ = ["PetscGradientResult", "PetscTangentResult", "PetscHessianResult", "gradient_record",
           "tangent_record", "hessian_record"]


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


@dataclass(frozen=True)
class PetscHessianResult(HessianResult):
    """A :class:`~krylov_adjoint.adjoint.result.HessianResult` whose vectors are this rank's.

    ``product`` is this rank's owned part of H·dθ (a read-only view of ``product_vec``);
    ``tangent`` and ``second_adjoint`` are local copies.
    """

    product_vec: Any = field(default=None, repr=False)
    theta_layout: Layout | None = field(default=None, repr=False)

    def gather_product(self, root: int | None = 0) -> np.ndarray | None:
        """The whole H·dθ on ``root`` (every rank with ``root=None``; collective)."""
        return self.theta_layout.gather(self.product, root)  # type: ignore[union-attr]

    def destroy(self) -> None:
        """Free the PETSc vector held by this result."""
        if self.product_vec is not None:
            self.product_vec.destroy()


def gradient_record(problem: Any, **fields: Any) -> PetscGradientResult:
    """The result of a gradient from the backend's Vecs (x and λ copied: the backend reuses
    its own)."""
    x_vec, lam_vec, gradient = (fields.pop("x").copy(), fields.pop("adjoint").copy(),
                                fields.pop("gradient"))
    return PetscGradientResult(
        gradient=gradient.getArray(readonly=True), x=x_vec.getArray(readonly=True),
        adjoint=lam_vec.getArray(readonly=True), gradient_vec=gradient, x_vec=x_vec,
        adjoint_vec=lam_vec, theta_layout=problem.theta_layout, x_layout=problem.x_layout,
        **fields)


def tangent_record(**fields: Any) -> PetscTangentResult:
    """The result of a directional derivative (local copies; the tangent Vec is freed)."""
    x, tangent = fields.pop("x"), fields.pop("tangent")
    result = PetscTangentResult(x=x.getArray(readonly=True).copy(),
                                tangent=tangent.getArray(readonly=True).copy(), **fields)
    tangent.destroy()
    return result


def hessian_record(problem: Any, **fields: Any) -> PetscHessianResult:
    """The result of a Hessian action (the product's Vec kept, the others copied and freed)."""
    product = fields.pop("product")
    arrays = {}
    for name in ("tangent", "second_adjoint"):
        vec = fields.pop(name)
        arrays[name] = vec.getArray(readonly=True).copy()
        vec.destroy()
    return PetscHessianResult(product=product.getArray(readonly=True), product_vec=product,
                              theta_layout=problem.theta_layout, **arrays, **fields)

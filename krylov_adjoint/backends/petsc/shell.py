"""A PETSc Python shell matrix whose ``mult``/``multTranspose`` call the user's callbacks."""

from __future__ import annotations

from typing import Any

from ._import import petsc
from .layout import Layout
from .vecs import VecProblem

__all__ = ["ShellOperator"]


class _Context:
    """The Python context of one shell matrix (``transposed`` swaps the two products)."""

    def __init__(self, owner: ShellOperator, transposed: bool) -> None:
        self.owner = owner
        self.transposed = transposed

    def mult(self, mat: Any, x: Any, y: Any) -> None:
        self.owner.apply(x, y, transpose=self.transposed)

    def multTranspose(self, mat: Any, x: Any, y: Any) -> None:  # noqa: N802 (PETSc's name)
        self.owner.apply(x, y, transpose=not self.transposed)


class ShellOperator:
    """A(θ) and A(θ)ᵀ as two PETSc shell matrices on x's layout.

    ``A.mult`` calls the operator's ``matvec`` and ``A.multTranspose`` its ``rmatvec``;
    ``AT`` is the same pair swapped, so that a forward ``KSPSolve`` with ``AT`` solves the
    adjoint system with the user's explicit ``rmatvec`` (no transposed product of anything).
    Both follow :meth:`bind`: the problem at the current θ. Failures inside a product are
    recorded on their rank and turn the output into NaN (see :mod:`.collective`).

    Parameters
    ----------
    layout : Layout
        The layout of x.

    Attributes
    ----------
    A, AT : petsc4py.PETSc.Mat
        The shell matrices.
    products : dict
        How many ``matvec`` and ``rmatvec`` applications ran on this rank.
    """

    def __init__(self, layout: Layout) -> None:
        PETSc = petsc()
        sizes = ((layout.local_size, layout.size), (layout.local_size, layout.size))
        self.bound: VecProblem | None = None
        self.products = {"matvec": 0, "rmatvec": 0}
        self.A = PETSc.Mat().createPython(sizes, context=_Context(self, False),
                                          comm=layout.comm)
        self.A.setUp()
        self.AT = PETSc.Mat().createPython(sizes, context=_Context(self, True),
                                           comm=layout.comm)
        self.AT.setUp()

    def bind(self, bound: VecProblem) -> None:
        """Apply the problem at a new θ from now on."""
        self.bound = bound
        # a new operator: PETSc objects caching anything about A must see a new state
        self.A.assemble()
        self.AT.assemble()

    def apply(self, x: Any, y: Any, *, transpose: bool) -> None:
        """``y = A x`` or ``y = Aᵀ x`` at the bound θ."""
        bound = self.bound
        if bound is None:
            raise RuntimeError("the shell operator is not bound to a θ yet")
        if transpose:
            self.products["rmatvec"] += 1
            bound.rmatvec(x, y)
        else:
            self.products["matvec"] += 1
            bound.matvec(x, y)

    def destroy(self) -> None:
        """Free the PETSc objects."""
        self.A.destroy()
        self.AT.destroy()

"""A declared nullspace on PETSc: ``MatNullSpace`` objects for A(θ) and A(θ)ᵀ at one θ.

The declared vectors (this rank's rows) are copied into Vecs and orthonormalised by modified
Gram–Schmidt with global inner products, as ``MatNullSpaceCreate`` requires; the objects are
attached to the shell operators (``MatSetNullSpace`` and ``MatSetTransposeNullSpace``: KSP
then removes the nullspace of Aᵀ from the right-hand side and keeps the Krylov vectors clear
of that of A) and to the assembled matrix as its near-nullspace (``MatSetNearNullSpace``,
read by GAMG when it builds its coarse spaces).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import CallbackError
from ._import import petsc

__all__ = ["PetscNullspace"]


class PetscNullspace:
    """The nullspaces of A(θ) (``A``) and of A(θ)ᵀ (``AT``) as PETSc ``NullSpace`` objects.

    Collective. ``raw`` keeps the declared (not orthonormalised) vectors of each, for the
    check that A really annihilates them.

    Parameters
    ----------
    Z, W : ndarray, shape (n_local, k)
        This rank's rows of the declared vectors of A and of Aᵀ (``W`` None: those of A).
    layout : Layout
        The layout of x.
    guard : ErrorGuard
        Linearly dependent vectors are recorded (on every rank alike) and raised at the
        next checkpoint.
    """

    def __init__(self, Z: np.ndarray, W: np.ndarray | None, layout: Any, guard: Any) -> None:
        self.raw: dict[str, list[Any]] = {"operator.nullspace": _vecs(Z, layout)}
        basis = _orthonormal(self.raw["operator.nullspace"], "operator.nullspace", guard)
        self.A = petsc().NullSpace().create(vectors=basis, comm=layout.comm)
        self._basis = {False: basis}
        if W is None:
            self.AT, self._basis[True] = self.A, basis
        else:
            name = "operator.nullspace (transpose)"
            self.raw[name] = _vecs(W, layout)
            self._basis[True] = _orthonormal(self.raw[name], name, guard)
            self.AT = petsc().NullSpace().create(vectors=self._basis[True], comm=layout.comm)

    def attach(self, shell: Any, assembled: Any = None) -> None:
        """Declare the nullspaces on the shell operators A and Aᵀ, and on the assembled
        matrix (its nullspace and near-nullspace), when there is one."""
        shell.A.setNullSpace(self.A)
        shell.A.setTransposeNullSpace(self.AT)
        shell.AT.setNullSpace(self.AT)
        shell.AT.setTransposeNullSpace(self.A)
        if assembled is not None:
            assembled.setNullSpace(self.A)
            assembled.setTransposeNullSpace(self.AT)
            assembled.setNearNullSpace(self.A)

    def remove(self, v: Any, *, transpose: bool) -> None:
        """Remove from ``v`` (in place) its component along the nullspace of A (of Aᵀ when
        ``transpose``)."""
        (self.AT if transpose else self.A).remove(v)

    def measure(self, v: Any, *, transpose: bool) -> float:
        """‖component of v along the nullspace of A (Aᵀ)‖ / ‖v‖ (global; 0 for v = 0)."""
        size = float(v.norm())
        if size == 0.0:
            return 0.0
        return float(np.sqrt(sum(float(q.dot(v)) ** 2 for q in self._basis[transpose]))) / size

    def component(self, v: Any, *, transpose: bool) -> Any:
        """A new Vec: the component of ``v`` along the nullspace of A (of Aᵀ)."""
        out = v.copy()
        self.remove(out, transpose=transpose)
        out.aypx(-1.0, v)
        return out

    def destroy(self) -> None:
        """Free the PETSc objects (collective)."""
        if self.AT is not self.A:
            self.AT.destroy()
        self.A.destroy()
        for vecs in (*self.raw.values(), *self._basis.values()):
            for vec in vecs:
                vec.destroy()


def _vecs(columns: np.ndarray, layout: Any) -> list[Any]:
    out = []
    for j in range(columns.shape[1]):
        vec = layout.create_vec()
        vec.setArray(np.ascontiguousarray(columns[:, j]))
        out.append(vec)
    return out


def _orthonormal(vecs: list[Any], name: str, guard: Any) -> list[Any]:
    """Modified Gram–Schmidt with global inner products (every rank decides alike)."""
    out: list[Any] = []
    scale = max(float(v.norm()) for v in vecs)
    for vec in vecs:
        q = vec.copy()
        for p in out:
            q.axpy(-float(p.dot(q)), p)
        size = float(q.norm())
        if scale == 0.0 or size <= 1e-10 * scale:
            guard.record(name, CallbackError(name, f"the {len(vecs)} vectors are linearly "
                                                   "dependent (or zero): declare a basis of "
                                                   "the nullspace"))
            guard.checkpoint(name)
        q.scale(1.0 / size)
        out.append(q)
    return out

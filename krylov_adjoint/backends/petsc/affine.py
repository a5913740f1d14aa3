"""Distributed affine operators ``A(θ) = A₀ + Σ_k θ_k A_k`` from PETSc matrices.

The distributed twin of :func:`krylov_adjoint.adapters.affine_operator`, built on
:func:`~krylov_adjoint.backends.petsc.from_petsc_assembly`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ...problem.structure import Structure
from ._import import petsc
from .assembled import PetscAssembledOperator
from .collective import ErrorGuard
from .layout import Layout, as_mpi_comm

__all__ = ["petsc_affine_operator"]


def petsc_affine_operator(A0: Any, terms: Any, theta0: Any, *,
                          structure: str | Structure = "general",
                          dirichlet_rows: Any = None, comm: Any = None
                          ) -> PetscAssembledOperator:
    """``A(θ) = A₀ + Σ_k θ_k A_k`` from distributed PETSc matrices (collective).

    The distributed twin of :func:`~krylov_adjoint.adapters.affine_operator`, built on
    :func:`from_petsc_assembly`: the local rows of A₀ and of every A_k are merged once onto
    their union pattern (per rank), A(θ) is written into one MPIAIJ matrix, and the VJP of
    the values is ``Gᵀ values_bar`` (G: the A_k's values on the merged local pattern). Each
    rank's rows depend on every θ_k: the entries a rank does not own are its ``theta_ghosts``.

    Parameters
    ----------
    A0 : petsc4py.PETSc.Mat or None
        The θ-independent part.
    terms : sequence of petsc4py.PETSc.Mat
        The A_k, with A₀'s row and column layout (P of them; meant for moderate P).
    theta0 : array
        This rank's block of θ (the blocks over the ranks sum to P).
    structure, dirichlet_rows, comm
        As in :func:`from_petsc_assembly`.

    Returns
    -------
    PetscAssembledOperator

    Examples
    --------
    >>> import numpy as np
    >>> from petsc4py import PETSc
    >>> def diagonal(values):
    ...     A = PETSc.Mat().createAIJ((2, 2), nnz=1, comm=PETSc.COMM_SELF)
    ...     for i, v in enumerate(values):
    ...         A.setValue(i, i, v)
    ...     A.assemble()
    ...     return A
    >>> op = petsc_affine_operator(diagonal([1.0, 1.0]), [diagonal([1.0, 0.0]),
    ...                            diagonal([0.0, 2.0])], np.array([3.0, 4.0]),
    ...                            structure="spd", comm=PETSc.COMM_SELF)
    >>> op.mat.getValues(range(2), range(2))
    array([[4., 0.],
           [0., 9.]])
    >>> op.destroy()
    """
    PETSc = petsc()
    comm = as_mpi_comm(comm)
    guard = ErrorGuard(comm)
    matrices = [("A0", A0)] + [(f"terms[{k}]", A) for k, A in enumerate(terms)]
    local: list[sp.csr_matrix | None] = []
    for name, A in matrices:
        if A is None:
            local.append(None)
            continue
        with guard.local(name, is_input=True):
            if not isinstance(A, PETSc.Mat):
                raise TypeError(f"{name} must be a PETSc Mat, got {type(A).__name__}")
        guard.checkpoint(f"the check of {name}")
        indptr, indices, data = A.getValuesCSR()
        (n_local, n), _ = A.getSizes()
        local.append(sp.csr_matrix((np.asarray(data, dtype=np.float64), indices, indptr),
                                   shape=(n_local, n)))
    shapes = {m.shape for m in local if m is not None}
    with guard.local("terms", is_input=True):
        if len(shapes) != 1:
            raise ValueError(f"A0 and the terms must share their row layout and size, got "
                             f"local shapes {sorted(shapes)}")
    guard.checkpoint("the check of the terms")
    n_local, n = shapes.pop()
    P = len(matrices) - 1
    def keys(m: sp.csr_matrix) -> np.ndarray:
        return np.repeat(np.arange(n_local, dtype=np.int64), np.diff(m.indptr)) * n \
            + m.indices

    # the union pattern of the stored entries (explicit zeros included), columns sorted
    union_keys = np.unique(np.concatenate([keys(m) for m in local if m is not None]))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(union_keys // n,
                                                        minlength=n_local))])
    indices = union_keys % n
    nnz = union_keys.size

    def on_union(m: sp.csr_matrix) -> np.ndarray:
        """The values of ``m`` at the union pattern's positions (zeros elsewhere)."""
        out = np.zeros(nnz)
        np.add.at(out, np.searchsorted(union_keys, keys(m)), m.data)
        return out

    offset = np.zeros(nnz) if local[0] is None else on_union(local[0])
    G = sp.csr_matrix(np.stack([on_union(m) for m in local[1:]], axis=1)) if P \
        else sp.csr_matrix((nnz, 0))
    theta_layout = Layout.create(None, np.asarray(theta0).size, comm=comm, name="theta")
    owned = np.arange(theta_layout.start, theta_layout.stop)
    others = np.setdiff1d(np.arange(P), owned)
    view = np.concatenate([owned, others])  # θ view position → k
    G_view = sp.csr_matrix(G[:, view])
    mat = PETSc.Mat().createAIJ(((n_local, n), (n_local, n)),
                                csr=(indptr.astype(PETSc.IntType),
                                     indices.astype(PETSc.IntType), offset), comm=comm)
    mat.assemble()

    def assemble(theta_view: np.ndarray) -> Any:
        mat.setValuesCSR(indptr.astype(PETSc.IntType), indices.astype(PETSc.IntType),
                         offset + G_view @ theta_view)
        mat.assemble()
        return mat

    def assembly_vjp(theta_view: np.ndarray, values_bar: np.ndarray) -> np.ndarray:
        return np.asarray(G_view.T @ values_bar)

    def assembly_jvp(theta_view: np.ndarray, dtheta_view: np.ndarray) -> np.ndarray:
        return np.asarray(G_view @ dtheta_view)

    return PetscAssembledOperator(assemble, assembly_vjp, theta0, structure=structure,
                                  assembly_jvp=assembly_jvp, dirichlet_rows=dirichlet_rows,
                                  theta_ghosts=others, comm=comm)

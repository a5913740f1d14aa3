"""Distributed finite-element operators ``K(θ) = Σ_e s(ρ_e) K_e``, elements owned by ranks.

The distributed twin of :func:`krylov_adjoint.adapters.element_operator`: each rank gives its
elements (their global dofs) and the library runs the serial
:class:`~krylov_adjoint.adapters.ElementOperator` on the rank's *local* dof numbering (owned
dofs, then the ghosts its elements touch). The local values are added into one PETSc AIJ
matrix row by row (``MatSetValues``; the rows of other ranks' dofs travel through PETSc's
stash), on a pattern preallocated once by a ``MATPREALLOCATOR`` pass; Dirichlet dofs are
eliminated by ``MatZeroRowsColumns``, and the VJP is the serial element VJP on ghosted x and
λ. A density filter ρ = Hθ is a PETSc Mat, applied by ``MatMult`` and its transpose in the
chain rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...adapters.elements import ElementOperator, _element_structure
from ...adapters.scaling import as_scaling
from ...errors import CallbackError
from ...problem.structure import Structure
from ._import import mpi, petsc
from .collective import ErrorGuard
from .ghosts import GhostedIndices
from .layout import Layout, as_mpi_comm
from .problem import VECS, MatrixOperator

__all__ = ["PetscElementOperator", "petsc_element_operator"]


class PetscElementOperator(MatrixOperator):
    """``K(θ) = Σ_e s(ρ_e) K_e`` over the ranks' elements, ρ = θ or Hθ (collective).

    Build it with :func:`petsc_element_operator`.

    Attributes
    ----------
    local : ElementOperator or None
        The serial operator of this rank's elements on its local dof numbering (None on a
        rank without elements).
    dofs : GhostedIndices
        The owned dofs and the other ranks' dofs this rank's elements touch.
    element_layout : Layout
        Elements per rank (ρ's layout).
    theta_layout : Layout
        θ's layout (the columns of the parameter map, else the elements').
    mat : petsc4py.PETSc.Mat
        K at the last θ, Dirichlet rows and columns eliminated.
    """

    def __init__(self, element_matrices: Any, connectivity: Any, layout: Layout, *,
                 scaling: Any, simp_penalty: float, simp_eps: float, dirichlet_dofs: Any,
                 parameter_map: Any, structure: str | Structure, block_size: int = 1) -> None:
        PETSc = petsc()
        comm = layout.comm
        guard = ErrorGuard(comm)
        K = np.asarray(element_matrices, dtype=np.float64)
        conn = np.asarray(connectivity, dtype=np.int64)
        with guard.local("connectivity", is_input=True):
            if conn.ndim != 2:
                raise ValueError(f"connectivity must be (E_local, k), got shape {conn.shape}")
            if conn.size and (conn.min() < 0 or conn.max() >= layout.size):
                raise ValueError(f"connectivity entries must lie in [0, {layout.size})")
            if K.ndim != 2 and K.shape[0] != conn.shape[0]:
                raise ValueError(f"element_matrices must be (k, k) or (E_local, k, k), got "
                                 f"{K.shape}")
        guard.checkpoint("the check of the elements")
        self.law = as_scaling(scaling, simp_penalty=simp_penalty, simp_eps=simp_eps)
        declared = _element_structure(structure, K if K.size else np.zeros((1, 1)))
        self.element_layout = Layout.create(None, conn.shape[0], comm=comm, name="elements")
        self.dofs = GhostedIndices(layout, conn)
        n_ext = self.dofs.size
        self.local: ElementOperator | None = None
        if conn.shape[0]:
            self.local = ElementOperator(
                np.ascontiguousarray(self.dofs.local_index(conn), dtype=np.int64), K, n_ext,
                self.law, np.ones(n_ext, dtype=bool), None, declared)
        self.parameter_map = parameter_map
        self.theta_layout = self._theta_layout(parameter_map, guard)
        # the global matrix: each rank adds its local rows (owned, then its ghost dofs' rows,
        # which PETSc's stash sends to their owners) with MatSetValues, on a pattern
        # preallocated exactly by one MATPREALLOCATOR pass. No COO maps are kept
        # (MatSetPreallocationCOO held about 30 bytes per nonzero, 2.5 GB per rank at 10⁶
        # hexahedra on 2 ranks).
        int_type = PETSc.IntType
        self._rowmap = np.concatenate([np.arange(layout.start, layout.stop),
                                       self.dofs.ghosts]).astype(int_type)
        if self.local is not None:
            pattern = self.local.pattern
            self._indptr = pattern.indptr.astype(int_type)
            self._columns = self._rowmap[pattern.indices]
        else:
            self._indptr = np.zeros(self._rowmap.size + 1, dtype=int_type)  # empty rows
            self._columns = np.zeros(0, dtype=int_type)
        sizes = ((layout.local_size, layout.size), (layout.local_size, layout.size))
        self._mat = PETSc.Mat().create(comm=comm)
        self._mat.setSizes(sizes, bsize=int(block_size))
        self._mat.setType(PETSc.Mat.Type.AIJ)
        preallocator = PETSc.Mat().create(comm=comm)
        preallocator.setSizes(sizes, bsize=int(block_size))
        preallocator.setType(PETSc.Mat.Type.PREALLOCATOR)
        preallocator.setUp()
        self._add_rows(preallocator, np.zeros(self._columns.size))
        preallocator.assemble()
        preallocator.preallocatorPreallocate(self._mat, fill=True)
        preallocator.destroy()
        self._mat.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
        self.dirichlet_dofs = self._set_dirichlet(dirichlet_dofs, layout, guard,
                                                  "dirichlet_dofs")
        self._dof_mask = self._dirichlet_masks(layout, self.dofs)[1]
        self._rho = self.element_layout.create_vec()
        self._work = self.element_layout.create_vec()
        self._theta_key: bytes | None = None
        super().__init__(self._mult, layout=layout, structure=declared,
                         rmatvec=None if declared.is_symmetric else self._mult_transpose,
                         vjp=self._vjp_vecs, jvp=self._jvp_vecs, assemble=self._assembled,
                         prepare=self._prepare_vecs, interface=VECS)

    @property
    def mat(self) -> Any:
        """K at the last θ (Dirichlet rows and columns eliminated)."""
        return self._mat

    def densities(self, theta: Any) -> np.ndarray:
        """This rank's element densities ρ = θ or (Hθ) (collective; θ a Vec or local array)."""
        self._densities(self._theta_vec(theta))
        return np.array(self._rho.getArray(readonly=True))

    def element_products(self, lam: Any, x: Any) -> np.ndarray:
        """``λ_eᵀ K_e x_e`` for this rank's elements (collective; unscaled, as serial)."""
        lam_ext, x_ext = self.dofs.gather(lam), self.dofs.gather(x)
        if self.local is None:
            return np.zeros(0)
        return self.local.element_products(lam_ext, x_ext)

    # -- assembly --------------------------------------------------------------------------
    def _prepare_vecs(self, theta_vec: Any) -> None:
        """Collective: ρ at the new θ, the values summed into the matrix, Dirichlet rows out."""
        key = np.array(theta_vec.getArray(readonly=True)).tobytes()
        same = bool(self.layout.comm.allreduce(int(key == self._theta_key), op=mpi().MIN))
        if same:
            return
        self._densities(theta_vec)
        guard = ErrorGuard(self.layout.comm)
        values = np.zeros(0)
        with guard.local("scaling"):
            if self.local is not None:
                values = self.local.values(np.array(self._rho.getArray(readonly=True)))
        if guard.failed:
            values = np.full(self._columns.size, np.nan)
        self._mat.zeroEntries()
        self._add_rows(self._mat, values)
        self._mat.assemble()
        self._eliminate()
        self._theta_key = key
        if guard.failed:
            failure = guard._failure
            guard.clear()
            raise CallbackError("scaling", f"{failure.kind}: {failure.message}")

    def _add_rows(self, mat: Any, values: np.ndarray) -> None:
        """Add this rank's local rows (global row and column numbers) into ``mat``."""
        mat.setValuesIJV(self._indptr, self._columns, values,
                         addv=petsc().InsertMode.ADD_VALUES, rowmap=self._rowmap)

    def _densities(self, theta_vec: Any) -> None:
        if self.parameter_map is None:
            theta_vec.copy(self._rho)
        else:
            self.parameter_map.mult(theta_vec, self._rho)

    def _vjp_vecs(self, theta_vec: Any, x: Any, lam: Any, out: Any) -> None:
        """``Hᵀ[s'(ρ_e) λ_eᵀ K_e x_e]`` with λ, x zero at Dirichlet dofs (the serial VJP)."""
        x_ext = self.dofs.gather(x) * self._dof_mask
        lam_ext = self.dofs.gather(lam) * self._dof_mask
        rho_bar = np.zeros(self.element_layout.local_size)
        if self.local is not None:
            rho_bar = self.local.vjp(np.array(self._rho.getArray(readonly=True)), x_ext,
                                     lam_ext)
        self._pull_back(rho_bar, out)

    def _jvp_vecs(self, theta_vec: Any, x: Any, dtheta: Any, out: Any) -> None:
        """``(∂K/∂θ·dθ) x``: the serial element JVP on ghosted x, summed over ranks."""
        x_ext = self.dofs.gather(x) * self._dof_mask
        if self.parameter_map is None:
            dtheta.copy(self._work)
        else:
            self.parameter_map.mult(dtheta, self._work)
        y_ext = np.zeros(self.dofs.size)
        if self.local is not None:
            y_ext = self.local.jvp(np.array(self._rho.getArray(readonly=True)), x_ext,
                                   np.array(self._work.getArray(readonly=True)))
        self.dofs.add(y_ext * self._dof_mask, out)

    def _pull_back(self, rho_bar: np.ndarray, out: Any) -> None:
        """Collective: ``out = Hᵀ ρ̄`` (or ρ̄)."""
        if self.parameter_map is None:
            out.setArray(rho_bar)
            return
        self._work.setArray(rho_bar)
        self.parameter_map.multTranspose(self._work, out)

    # -- helpers ------------------------------------------------------------------------------
    def _theta_vec(self, theta: Any) -> Any:
        if isinstance(theta, petsc().Vec):
            return theta
        vec = self.theta_layout.create_vec()
        vec.setArray(np.asarray(theta, dtype=np.float64))
        return vec

    def _theta_layout(self, H: Any, guard: ErrorGuard) -> Layout:
        if H is None:
            return self.element_layout
        with guard.local("parameter_map", is_input=True):
            if not isinstance(H, petsc().Mat):
                raise TypeError(f"parameter_map must be a PETSc Mat, got {type(H).__name__}")
            (rows, _), _ = H.getSizes()
            if rows != self.element_layout.local_size:
                raise ValueError(f"parameter_map has {rows} local rows, but this rank owns "
                                 f"{self.element_layout.local_size} elements")
        guard.checkpoint("the check of parameter_map")
        start, stop = H.getOwnershipRangeColumn()
        return Layout.create(H.getSize()[1], stop - start, comm=self.element_layout.comm,
                             name="theta")

    def destroy(self) -> None:
        """Free the PETSc objects this operator made (collective)."""
        self.dofs.destroy()
        for obj in (self._mat, self._rho, self._work):
            obj.destroy()


def petsc_element_operator(element_matrices: Any, connectivity: Any, n_local_dofs: int, *,
                           n_dofs: int | None = None, scaling: Any = "linear",
                           simp_penalty: float = 3.0, simp_eps: float = 1e-9,
                           dirichlet_dofs: Any = None, parameter_map: Any = None,
                           structure: str | Structure = "auto", block_size: int = 1,
                           comm: Any = None) -> PetscElementOperator:
    """``K(θ) = Σ_e s(ρ_e) K_e`` with elements owned by ranks (collective).

    The distributed :func:`~krylov_adjoint.adapters.element_operator`.

    Parameters
    ----------
    element_matrices : array (k, k) or (E_local, k, k)
        A reference matrix shared by all elements, or one per local element.
    connectivity : int array (E_local, k)
        The *global* dofs of this rank's elements (a rank may own none: shape (0, k)).
    n_local_dofs : int
        The dofs this rank owns (a contiguous block, in rank order).
    n_dofs : int, optional
        N, checked against the sum of the local sizes.
    scaling, simp_penalty, simp_eps, structure
        As in :func:`~krylov_adjoint.adapters.element_operator`.
    dirichlet_dofs : int array, optional
        Global dofs owned by this rank, eliminated by ``MatZeroRowsColumns`` (unit
        diagonal): give b = 0 there (homogeneous conditions).
    parameter_map : petsc4py.PETSc.Mat, optional
        H of ρ = Hθ (E × P; its local rows are this rank's elements), e.g. a density filter;
        the VJP applies Hᵀ by ``MatMultTranspose``.
    block_size : int
        Dofs per node (3 for 3-D elasticity), given to the matrix for GAMG (with a
        near-nullspace: ``op.mat.setNearNullSpace(...)``).
    comm : communicator, optional

    Returns
    -------
    PetscElementOperator
        Pass ``theta_layout=op.theta_layout`` to the problem.

    Examples
    --------
    Three bars with conductivities θ, left end fixed (on one rank here):

    >>> import numpy as np
    >>> from mpi4py import MPI
    >>> Ke = np.array([[1.0, -1.0], [-1.0, 1.0]])
    >>> op = petsc_element_operator(Ke, [[0, 1], [1, 2], [2, 3]], 4, dirichlet_dofs=[0],
    ...                             structure="spd", comm=MPI.COMM_SELF)
    >>> theta = op.theta_layout.create_vec(); theta.setArray([1.0, 2.0, 3.0])
    >>> op._prepare_vecs(theta)
    >>> op.mat.getValues(range(4), range(4))
    array([[ 1.,  0.,  0.,  0.],
           [ 0.,  3., -2.,  0.],
           [ 0., -2.,  5., -3.],
           [ 0.,  0., -3.,  3.]])
    >>> op.destroy()
    """
    layout = Layout.create(n_dofs, n_local_dofs, comm=as_mpi_comm(comm), name="dofs")
    return PetscElementOperator(element_matrices, connectivity, layout, scaling=scaling,
                                simp_penalty=simp_penalty, simp_eps=simp_eps,
                                dirichlet_dofs=dirichlet_dofs, parameter_map=parameter_map,
                                structure=structure, block_size=block_size)

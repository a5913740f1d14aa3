"""Distributed operators from a simulator's own PETSc AIJ matrix and the VJP of its values.

The distributed twin of :func:`krylov_adjoint.adapters.from_assembly`: the user assembles
A(θ) as a PETSc ``Mat`` (MPIAIJ, any row split) and gives the VJP of this rank's values;
the library forms the pattern cotangent ``λ_i x_j`` on this rank's rows (with
:func:`~krylov_adjoint.adapters.pattern.entry_cotangent`, the serial adapters' formula),
reading x at off-process columns through one ghost scatter over the columns of the
off-diagonal block, never by a gather. Products are ``MatMult`` / ``MatMultTranspose`` on
the user's matrix, and the preconditioner is built from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..._checks import real_array
from ...adapters.pattern import entry_cotangent
from ...errors import CallbackError
from ...problem.structure import Structure
from ._import import mpi, petsc
from .collective import ErrorGuard
from .ghosts import GhostedIndices
from .layout import Layout, as_mpi_comm
from .problem import VECS, MatrixOperator

__all__ = ["PetscAssembledOperator", "from_petsc_assembly"]

#: Relative tolerance of the symmetry check of declared-symmetric matrices.
SYMMETRY_RTOL = 1e-12


class PetscAssembledOperator(MatrixOperator):
    """A(θ) known as the user's distributed PETSc AIJ matrix on a fixed pattern, and its VJP.

    Build it with :func:`from_petsc_assembly`. The operator VJP on this rank is

        vjp(θ, x, λ) = assembly_vjp(θ, [λ_i x_j] over this rank's stored entries),

    the term the gradient engine subtracts, with θ̄ entries for other ranks' parameters (the
    ``theta_ghosts``) summed where they are owned.

    Attributes
    ----------
    theta_layout : Layout
        The layout of θ (this rank owns ``theta0``'s entries).
    columns : GhostedIndices
        The owned columns and the off-process ones this rank's rows read.
    dirichlet_rows : ndarray of int
        The global rows (owned by this rank) eliminated by ``MatZeroRowsColumns``.
    assembly_count : int
        Calls of the user's ``assemble``.
    """

    def __init__(self, assemble: Callable[[np.ndarray], Any],
                 assembly_vjp: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 theta0: Any, *, structure: str | Structure = "general",
                 assembly_jvp: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 dirichlet_rows: Any = None, theta_ghosts: Any = None,
                 comm: Any = None) -> None:
        if not callable(assemble) or not callable(assembly_vjp):
            raise TypeError("assemble and assembly_vjp must be callable")
        if assembly_jvp is not None and not callable(assembly_jvp):
            raise TypeError(f"assembly_jvp must be callable, got {type(assembly_jvp).__name__}")
        comm = as_mpi_comm(comm)
        guard = ErrorGuard(comm)
        theta0_local = np.zeros(0)
        with guard.local("theta0", is_input=True):
            theta0_local = real_array(theta0, "theta0").ravel()
        guard.checkpoint("the check of theta0")
        self.theta_layout = Layout.create(None, theta0_local.size, comm=comm, name="theta")
        self._theta_ghosts = GhostedIndices(
            self.theta_layout, np.zeros(0, dtype=np.int64) if theta_ghosts is None
            else theta_ghosts)
        self._user_assemble, self._assembly_vjp = assemble, assembly_vjp
        self._assembly_jvp = assembly_jvp
        self.assembly_count = 0
        first = self._call_assemble(self._theta_view(theta0_local), guard)
        rows_local = int(first.getLocalSize()[0]) if first is not None else 0
        with guard.local("assemble"):
            if first is None:
                raise TypeError("assemble must return a PETSc Mat")
            (n_rows_local, n_rows), (n_cols_local, n_cols) = first.getSizes()
            if n_rows != n_cols or n_rows_local != n_cols_local:
                raise ValueError(f"A(θ) must be square with matching row and column splits, "
                                 f"got sizes (({n_rows_local}, {n_rows}), ({n_cols_local}, "
                                 f"{n_cols}))")
        guard.checkpoint("assemble (the first assembly, at theta0)")
        layout = Layout.create(first.getSize()[0], rows_local, comm=comm, name="x")
        indptr, indices, _ = first.getValuesCSR()
        self._indptr, self._indices = np.array(indptr), np.array(indices)
        self.columns = GhostedIndices(layout, self._indices)
        self._rows = np.repeat(np.arange(rows_local), np.diff(self._indptr))
        self._cols = self.columns.local_index(self._indices)
        self.dirichlet_rows = self._set_dirichlet(dirichlet_rows, layout, guard,
                                                  "dirichlet_rows")
        self._row_mask, self._column_mask = self._dirichlet_masks(layout, self.columns)
        self._mat = first
        self._theta_key: bytes | None = np.ascontiguousarray(theta0_local).tobytes()
        self._eliminate()
        super().__init__(self._mult, layout=layout, structure=structure,
                         rmatvec=None if Structure.coerce(structure).is_symmetric
                         else self._mult_transpose,
                         vjp=self._vjp_vecs, jvp=None if assembly_jvp is None else self._jvp_vecs,
                         assemble=self._assembled, prepare=self._prepare_vecs,
                         interface=VECS)
        if self.structure.is_symmetric:
            self._check_symmetric(guard)

    # -- the matrix at θ -----------------------------------------------------------------
    @property
    def mat(self) -> Any:
        """The user's matrix at the last θ (Dirichlet rows and columns eliminated)."""
        return self._mat

    def _theta_view(self, theta_local: np.ndarray) -> np.ndarray:
        """θ as the callbacks see it: owned entries, then the declared ghosts."""
        if not self._theta_ghosts.anywhere:  # the same decision on every rank
            return theta_local
        vec = self.theta_layout.create_vec()
        vec.setArray(theta_local)
        out = self._theta_ghosts.gather(vec)
        vec.destroy()
        return out

    def _call_assemble(self, theta: np.ndarray, guard: ErrorGuard) -> Any:
        """Collective (the user's assembly is): A(θ), or None after a local failure."""
        PETSc = petsc()
        self.assembly_count += 1
        mat = None
        with guard.local("assemble"):
            mat = self._user_assemble(theta)
            if not isinstance(mat, PETSc.Mat):
                raise TypeError(f"assemble must return a PETSc Mat, got {type(mat).__name__}")
            if "aij" not in mat.getType().lower():
                raise TypeError(f"assemble must return an AIJ Mat, got type {mat.getType()!r}")
        return mat

    def _prepare_vecs(self, theta_vec: Any) -> None:
        """Collective: assemble at a new θ, check the pattern, eliminate Dirichlet rows."""
        theta_local = np.array(theta_vec.getArray(readonly=True))
        key = theta_local.tobytes()
        comm = self.layout.comm
        same = bool(comm.allreduce(int(key == self._theta_key), op=mpi().MIN))
        if same:
            return
        theta = self._theta_view(theta_local)
        guard = ErrorGuard(comm)  # local failures are re-raised below, after the collectives
        mat = self._call_assemble(theta, guard)
        problem = None
        if mat is not None:
            indptr, indices, _ = mat.getValuesCSR()
            problem = _pattern_change(self._indptr, self._indices, indptr, indices)
            self._mat = mat
        self._theta_key = key
        self._eliminate()
        if guard.failed:
            failure = guard._failure
            guard.clear()
            raise CallbackError("assemble", f"{failure.kind}: {failure.message}")
        if problem is not None:
            raise CallbackError("assemble", problem)

    # -- derivatives ---------------------------------------------------------------------
    def _vjp_vecs(self, theta_vec: Any, x: Any, lam: Any, out: Any) -> None:
        x_columns = self.columns.gather(x)  # collective first: user code may raise after
        lam_rows = np.array(lam.getArray(readonly=True))
        theta = self._theta_view(np.array(theta_vec.getArray(readonly=True)))
        guard = ErrorGuard(self.layout.comm)
        local = np.zeros(self._theta_ghosts.size)
        with guard.local("assembly_vjp"):
            local = self.pattern_vjp(theta, x_columns, lam_rows)
        self._theta_ghosts.add(local, out)
        if guard.failed:
            failure = guard._failure
            guard.clear()
            out.set(np.nan)
            raise CallbackError("assembly_vjp", f"{failure.kind}: {failure.message}")

    def pattern_vjp(self, theta: np.ndarray, x_columns: np.ndarray, lam_rows: np.ndarray
                    ) -> np.ndarray:
        """Local: ``assembly_vjp(θ, λ_i x_j)`` from this rank's λ and the ghosted x.

        Dirichlet rows and columns carry no cotangent (their values do not depend on θ).
        """
        if self._has_dirichlet:
            lam_rows = lam_rows * self._row_mask
            x_columns = x_columns * self._column_mask
        values_bar = entry_cotangent(lam_rows, x_columns, self._rows, self._cols)
        out = np.asarray(self._assembly_vjp(theta, values_bar), dtype=np.float64)
        expected = self._theta_ghosts.size
        if out.shape != (expected,):
            raise CallbackError("assembly_vjp", f"expected shape ({expected},) (this rank's "
                                f"θ entries then its theta_ghosts), got {out.shape}")
        return out

    def _jvp_vecs(self, theta_vec: Any, x: Any, dtheta: Any, out: Any) -> None:
        x_columns = self.columns.gather(x)
        theta = self._theta_view(np.array(theta_vec.getArray(readonly=True)))
        direction = self._theta_view(np.array(dtheta.getArray(readonly=True)))
        values = np.asarray(self._assembly_jvp(theta, direction),  # type: ignore[misc]
                            dtype=np.float64)
        if values.shape != self._indices.shape:
            raise CallbackError("assembly_jvp", f"expected shape {self._indices.shape} (this "
                                f"rank's stored entries), got {values.shape}")
        if self._has_dirichlet:
            values = values * self._row_mask[self._rows] * self._column_mask[self._cols]
        tangent = sp.csr_matrix((values, self._cols, self._indptr),
                                shape=(self.layout.local_size, self.columns.size))
        out.setArray(tangent @ x_columns)

    # -- set-up helpers --------------------------------------------------------------------

    def _check_symmetric(self, guard: ErrorGuard) -> None:
        PETSc = petsc()
        transpose = self._mat.transpose(PETSc.Mat())
        scale = self._mat.norm(PETSc.NormType.INFINITY)
        transpose.axpy(-1.0, self._mat)
        defect = transpose.norm(PETSc.NormType.INFINITY)
        transpose.destroy()
        with guard.local("assemble", is_input=True):
            if defect > SYMMETRY_RTOL * scale:
                raise ValueError(f"declared {self.structure.name.lower()}, but ‖A − Aᵀ‖∞ = "
                                 f"{defect:.3e} (‖A‖∞ = {scale:.3e}); declare "
                                 "structure='general'")
        guard.checkpoint("the symmetry check of A(theta0)")

    def destroy(self) -> None:
        """Free the scatters (collective; the user's matrix is theirs)."""
        self.columns.destroy()
        self._theta_ghosts.destroy()


def from_petsc_assembly(assemble: Callable[[np.ndarray], Any],
                        assembly_vjp: Callable[[np.ndarray, np.ndarray], np.ndarray],
                        theta0: Any, *, structure: str | Structure = "general",
                        assembly_jvp: Callable[[np.ndarray, np.ndarray], np.ndarray]
                        | None = None, dirichlet_rows: Any = None,
                        theta_ghosts: Any = None, comm: Any = None
                        ) -> PetscAssembledOperator:
    """A distributed operator from a simulator's PETSc assembly ``θ ↦ A(θ)`` and its VJP.

    The distributed twin of :func:`~krylov_adjoint.adapters.from_assembly` (collective).
    Each rank owns a block of θ (``theta0`` is this rank's block) and the rows of A(θ) the
    user's matrix gives it. The library forms ``λ_i x_j`` on this rank's stored entries and
    calls ``assembly_vjp`` on it, which gives this rank's part of

        λᵀ (∂A/∂θ) x = Σ_(i,j) λ_i x_j ∂A_ij/∂θ.

    Parameters
    ----------
    assemble : callable ``theta -> Mat``
        Collective: A(θ) as an AIJ ``Mat`` (MPIAIJ on several ranks) with the same stored
        positions on every rank at every θ (explicit zeros are fine; pass
        ``MAT_KEEP_NONZERO_PATTERN`` semantics, i.e. never drop entries). It may fill and
        return the same ``Mat`` each time. ``theta`` is this rank's block, followed by the
        ``theta_ghosts`` entries when declared. Its failures after its last collective call
        (a wrong return, a changed pattern) are reported on every rank; an exception raised
        on one rank *before* ``MatAssemblyEnd`` leaves the others waiting in it, as in any
        collective user code: check your inputs before assembling.
    assembly_vjp : callable ``(theta, values_bar) -> ndarray``
        Local: ``Σ_k values_bar[k] ∂values[k]/∂θ`` for this rank's values, in the order of
        ``mat.getValuesCSR()`` (this rank's rows, global columns sorted in each row), as an
        array over this rank's θ block followed by its ``theta_ghosts`` (entries for other
        ranks' θ are summed where they are owned). No minus sign: the engine subtracts it.
    theta0 : array
        This rank's block of θ, at which A is assembled once (the matrix is kept).
    structure : {"general", "symmetric", "spd"}
        Declared for every θ; a declared symmetry is checked on ``A(theta0)``.
    assembly_jvp : callable ``(theta, dtheta) -> ndarray``, optional
        Local: ``(∂values/∂θ) dθ`` for this rank's values (``dtheta`` ghosted like θ);
        enables forward mode.
    dirichlet_rows : array of int, optional
        Global rows owned by this rank, eliminated after each assembly by
        ``MatZeroRowsColumns`` (unit diagonal): their rows and columns no longer depend on
        θ, so they carry no cotangent. Homogeneous conditions: give b = 0 there.
    theta_ghosts : array of int, optional
        Global indices of other ranks' θ entries this rank's values depend on.
    comm : communicator, optional
        ``COMM_WORLD`` by default.

    Returns
    -------
    PetscAssembledOperator
        A :class:`~krylov_adjoint.backends.petsc.DistributedOperator` (``"vecs"``
        interface); pass ``theta_layout=op.theta_layout`` to the problem.

    Raises
    ------
    CollectiveCallbackError
        On every rank, naming the rank, when a later assembly changes this rank's pattern
        (at the next ``prepare``, i.e. the next new θ).

    Examples
    --------
    ``A(θ) = diag(θ)`` assembled by PETSc, on any number of ranks:

    >>> import numpy as np
    >>> from petsc4py import PETSc
    >>> def assemble(theta):
    ...     A = PETSc.Mat().createAIJ(((theta.size, None), (theta.size, None)), nnz=1,
    ...                               comm=PETSc.COMM_SELF)
    ...     start, stop = A.getOwnershipRange()
    ...     for i, value in zip(range(start, stop), theta):
    ...         A.setValue(i, i, value)
    ...     A.assemble()
    ...     return A
    >>> op = from_petsc_assembly(assemble, lambda theta, values_bar: values_bar,
    ...                          np.array([1.0, 2.0]), structure="spd", comm=PETSc.COMM_SELF)
    >>> op.layout.size, op.theta_layout.size, op.assembly_count
    (2, 2, 1)
    >>> op.destroy()
    """
    return PetscAssembledOperator(assemble, assembly_vjp, theta0, structure=structure,
                                  assembly_jvp=assembly_jvp, dirichlet_rows=dirichlet_rows,
                                  theta_ghosts=theta_ghosts, comm=comm)


def _pattern_change(indptr: np.ndarray, indices: np.ndarray, new_indptr: Any,
                    new_indices: Any) -> str | None:
    """Local: None when this rank's pattern is unchanged, else where it first differs."""
    new_indptr, new_indices = np.asarray(new_indptr), np.asarray(new_indices)
    if np.array_equal(indptr, new_indptr) and np.array_equal(indices, new_indices):
        return None
    if new_indptr.shape != indptr.shape:
        where = f"this rank now has {new_indptr.size - 1} rows instead of {indptr.size - 1}"
    else:
        counts, new_counts = np.diff(indptr), np.diff(new_indptr)
        differs = counts != new_counts
        if not differs.any():
            rows = np.repeat(np.arange(counts.size), counts)
            differs = np.zeros(counts.size, dtype=bool)
            differs[rows[indices != new_indices]] = True
        where = f"local row {int(np.flatnonzero(differs)[0])} differs"
    return ("the sparsity pattern of A(θ) changed since the first assembly "
            f"({where}); keep entries that vanish at some θ as explicit zeros")

"""The adjoint solve's preconditioner, made from the primal one without a second set-up.

Strategies (``adjoint_pc=``):

``"shared"``
    The primal PC object itself. Only for an operator declared symmetric with a PC that is
    symmetric by construction (Jacobi; GAMG/MG whose smoothers are Chebyshev or Richardson
    with Jacobi and whose coarse solve is direct), so that Mᵀ = M.
``"transpose"``
    ``PCApplyTranspose`` of the primal PC, wrapped as the adjoint KSP's PC: the exact
    transpose of any PC that has a transposed application.
``"explicit"``
    For MG/GAMG: a V-cycle on the *same* hierarchy (the primal's interpolations, shared)
    whose level operators are explicit transposes Aₗᵀ, with the same kind of smoothers.
    Every product in it is a forward ``MatMult`` (fast) instead of the ``MatMultTranspose``
    of ``PCApplyTranspose``. Its set-up is one ``MatTranspose`` per level and the smoothers'
    eigenvalue estimates (Chebyshev) on Aₗᵀ, whose spectrum is that of Aₗ: it is the
    transposed hierarchy, not bit-for-bit the transpose of the primal cycle. The coarsening,
    the interpolation and the Galerkin products are not recomputed.
``"auto"``
    ``"shared"`` when allowed, else ``"transpose"``. ``"explicit"`` is not the default: on the
    machine of ``docs/scaling.md`` (1M unknowns, 1–2 ranks) ``PCApplyTranspose`` of GAMG cost
    1.0–1.1× ``PCApply``; the explicit cycle brings that back to 1.0× but its set-up costs about
    two adjoint solves' worth of that saving, so it pays only when the preconditioner is reused
    over several θ, or where transposed products are slow (many ranks: PETSc does not overlap
    the reverse scatter of ``MatMultTranspose`` with computation).
"""

from __future__ import annotations

from typing import Any

from ._import import petsc
from .matrices import explicit_transpose

__all__ = ["ADJOINT_PC_MODES", "choose_mode", "is_symmetric_pc", "TransposedPC",
           "TransposedHierarchy"]

ADJOINT_PC_MODES = ("auto", "shared", "transpose", "explicit")

_SYMMETRIC_SMOOTHER_KSP = {"chebyshev", "richardson"}
_SYMMETRIC_SMOOTHER_PC = {"jacobi", "pbjacobi", "none"}
_DIRECT = {"lu", "cholesky", "redundant", "bjacobi", "svd", "telescope"}
MG_TYPES = {"gamg", "mg", "ml"}


def is_symmetric_pc(pc: Any) -> bool:
    """True when ``pc`` (set up) is symmetric by construction for a symmetric matrix."""
    kind = pc.getType()
    if kind in ("none", "jacobi", "pbjacobi"):
        return True
    if kind not in MG_TYPES:
        return False
    # distinct pre- and post-smoothers break the symmetry of the cycle (PCMGGetSmootherUp
    # would create them, so ask the options instead)
    options = petsc().Options(pc.getOptionsPrefix() or "")
    if options.getBool("pc_mg_distinct_smoothup", False):
        return False
    for level in range(1, pc.getMGLevels()):
        smoother = pc.getMGSmoother(level)
        if smoother.getType() not in _SYMMETRIC_SMOOTHER_KSP or \
                smoother.getPC().getType() not in _SYMMETRIC_SMOOTHER_PC:
            return False
    coarse = pc.getMGCoarseSolve()
    return coarse.getType() == "preonly" and coarse.getPC().getType() in _DIRECT


def choose_mode(mode: str, symmetric: bool, pc: Any) -> str:
    """Resolve ``"auto"`` and check that ``"shared"`` is allowed (``pc`` set up)."""
    if mode not in ADJOINT_PC_MODES:
        raise ValueError(f"adjoint_pc must be one of {ADJOINT_PC_MODES}, got {mode!r}")
    shareable = symmetric and is_symmetric_pc(pc)
    if mode == "shared" and not shareable:
        raise ValueError(
            "adjoint_pc='shared' uses the primal preconditioner M for Mᵀ: it needs an operator "
            f"declared symmetric and a symmetric PC, but the PC is {pc.getType()!r} on a "
            f"{'symmetric' if symmetric else 'nonsymmetric'} operator; use 'transpose'")
    if mode == "explicit" and pc.getType() not in MG_TYPES:
        return "transpose"
    if mode != "auto":
        return mode
    return "shared" if shareable else "transpose"


class TransposedPC:
    """A Python PC applying ``primal.applyTranspose`` (and ``primal.apply`` as its transpose)."""

    def __init__(self, primal: Any) -> None:
        self.primal = primal

    def apply(self, pc: Any, x: Any, y: Any) -> None:
        self.primal.applyTranspose(x, y)

    def applyTranspose(self, pc: Any, x: Any, y: Any) -> None:  # noqa: N802 (PETSc's name)
        self.primal.apply(x, y)


class TransposedHierarchy:
    """The primal MG hierarchy with explicitly transposed level operators, as a PCMG.

    Parameters
    ----------
    comm : communicator
    prefix : str
        The adjoint options prefix: ``-<prefix>mg_levels_ksp_max_it`` etc. tune this cycle.
    """

    def __init__(self, comm: Any, prefix: str) -> None:
        self.comm, self.prefix = comm, prefix
        self.transposes: list[Any] = []
        self.pc: Any = None

    def build(self, primal: Any, finest_transpose: Any) -> Any:
        """Collective: (re)build from a set-up primal MG PC; returns the PCMG (set up)."""
        levels = primal.getMGLevels()
        coarse_ops = [primal.getMGSmoother(level).getOperators()[1]
                      for level in range(levels - 1)]
        self._transpose_all(coarse_ops)
        if self.pc is None or self.pc.getMGLevels() != levels:
            self._create(primal, levels)
        pc = self.pc
        for level in range(1, levels):
            pc.setMGInterpolation(level, primal.getMGInterpolation(level))
        for level in range(levels - 1):
            smoother = pc.getMGCoarseSolve() if level == 0 else pc.getMGSmoother(level)
            smoother.setOperators(self.transposes[level], self.transposes[level])
        pc.setOperators(finest_transpose, finest_transpose)
        pc.getMGSmoother(levels - 1).setOperators(finest_transpose, finest_transpose)
        pc.setUp()
        return pc

    def _transpose_all(self, ops: list[Any]) -> None:
        # fresh transposes: a new set-up may have changed the coarse sparsity patterns
        for t in self.transposes:
            t.destroy()
        self.transposes = [explicit_transpose(a) for a in ops]

    def _create(self, primal: Any, levels: int) -> None:
        PETSc = petsc()
        if self.pc is not None:
            self.pc.destroy()
        pc = PETSc.PC().create(comm=self.comm)
        pc.setOptionsPrefix(self.prefix)
        pc.setType("mg")
        pc.setUseAmat(False)
        pc.setMGLevels(levels)
        pc.setMGType(primal.getMGType())
        for level in range(1, levels):
            source = primal.getMGSmoother(level)
            smoother = pc.getMGSmoother(level)
            smoother.setType(source.getType())
            smoother.getPC().setType(source.getPC().getType())
            _, _, _, max_it = source.getTolerances()
            smoother.setTolerances(max_it=max_it)
            smoother.setNormType(source.getNormType())
        coarse_src, coarse = primal.getMGCoarseSolve(), pc.getMGCoarseSolve()
        coarse.setType(coarse_src.getType())
        kind = coarse_src.getPC().getType()
        # GAMG's coarse solve is block Jacobi with LU on the rank(s) holding the coarse grid:
        # an exact solve, which "redundant" (LU of the whole coarse matrix) reproduces
        coarse.getPC().setType("redundant" if kind == "bjacobi" else kind)
        pc.setFromOptions()
        self.pc = pc

    def destroy(self) -> None:
        """Free the PETSc objects."""
        for t in self.transposes:
            t.destroy()
        self.transposes = []
        if self.pc is not None:
            self.pc.destroy()
            self.pc = None

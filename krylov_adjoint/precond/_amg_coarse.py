"""Coarsest-level solvers of an AMG cycle, each with its exact transpose.

The same choices as pyamg's ``coarse_grid_solver`` (``'pinv'``, ``'lu'``, ``'splu'``,
``'cholesky'``, a relaxation method, or ``None``), computed once at set-up:

========================  ==========================  ======================================
solver                    forward map                 transpose
========================  ==========================  ======================================
``pinv``                  ``A⁺ b``                    ``(A⁺)ᵀ b``
``lu``                    dense LU solve              LU solve with ``trans=1``
``splu``                  sparse LU solve on the      sparse LU solve with ``trans='T'`` on
                          non-empty rows/columns      the same rows/columns
``cholesky``              ``S⁻¹ b`` (symmetric)       the same map
relaxation (10 sweeps)    smoother from zero          transposed smoother on Aᵀ from zero
``None`` / ``'none'``     zero                        zero
========================  ==========================  ======================================

Krylov methods and callables are refused: they are not linear maps with a known transpose.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla

from ._amg_smoothers import SUPPORTED_SMOOTHERS, build_smoother, parse_smoother, same_steps

__all__ = ["CoarseSolver", "SUPPORTED_COARSE_SOLVERS", "parse_coarse_solver"]

SUPPORTED_COARSE_SOLVERS = ("pinv", "lu", "splu", "cholesky", "none") + tuple(
    s for s in SUPPORTED_SMOOTHERS if s not in ("none", "cf_jacobi", "fc_jacobi")
)


def parse_coarse_solver(spec: Any) -> tuple[str, dict[str, Any]]:
    """Validate a coarse solver request (pyamg's format) and return ``(name, options)``."""
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[1], dict):
            raise ValueError(f"coarse_solver: expected 'name' or ('name', {{options}}), "
                             f"got {spec!r}")
        name, options = spec[0], dict(spec[1])
    else:
        name, options = spec, {}
    if name is None:
        name = "none"
    if name == "pinv2":
        name = "pinv"
    if not isinstance(name, str) or name not in SUPPORTED_COARSE_SOLVERS:
        raise ValueError(
            f"coarse_solver {name!r} is not supported by AMGPreconditioner: its transpose is "
            "not implemented (Krylov methods and callables are not fixed linear maps). "
            f"Supported: {', '.join(SUPPORTED_COARSE_SOLVERS)}."
        )
    if name in SUPPORTED_SMOOTHERS and name != "none":
        options.setdefault("iterations", 10)
        parse_smoother((name, options), "coarse_solver")
    return name, options


class _RelaxationLevel:
    """A minimal stand-in for pyamg's level object holding only ``A``."""

    def __init__(self, A: Any) -> None:
        self.A = A


class CoarseSolver:
    """Direct (or fixed relaxation) solve on the coarsest level, and its transpose.

    Parameters
    ----------
    A : sparse matrix
        The coarsest-level matrix (the object pyamg holds, so cached spectral radii agree).
    name, options
        As returned by :func:`parse_coarse_solver`.
    """

    def __init__(self, A: Any, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.n = A.shape[0]
        self._zero = A.nnz == 0 or name == "none"
        self._A = A
        self._AT: Any = None
        self._kind = name
        if self._zero:
            return
        if name == "pinv":
            self._pinv = sla.pinv(A.toarray(), **options)
            self._pinvT: np.ndarray | None = None
        elif name == "lu":
            self._lu = sla.lu_factor(A.toarray(), **options)
        elif name == "cholesky":
            self._cho = sla.cho_factor(A.toarray(), **options)
        elif name == "splu":
            Acsc = A.tocsc()
            Acsc.eliminate_zeros()
            # Columns without entries (e.g. from a rank-deficient near-nullspace) are left
            # out, with their rows, as pyamg does.
            self._keep = np.flatnonzero(np.diff(Acsc.indptr))
            sub = Acsc[self._keep][:, self._keep].tocsc()
            self._splu = spla.splu(sub, **options)
        else:
            self._smoother = build_smoother(
                parse_smoother((name, options), "coarse_solver"), _RelaxationLevel(A), -1
            )
            self._smoother_T = self._smoother.transposed()

    def is_symmetric(self) -> bool | None:
        """Whether ``B_c = B_cᵀ`` when the coarse matrix is symmetric (None: cannot tell).

        The direct solves invert (or pseudo-invert) the matrix: symmetric. A relaxation
        is symmetric when its transpose runs the same steps (e.g. symmetric Gauss–Seidel).
        """
        if self._zero or self._kind in ("pinv", "lu", "cholesky", "splu"):
            return True
        return same_steps(self._smoother_T, self._smoother)

    def solve(self, b: np.ndarray) -> np.ndarray:
        """Return the coarse solution ``x = B_c b``."""
        return self._apply(b, transpose=False)

    def solve_transpose(self, b: np.ndarray) -> np.ndarray:
        """Return ``B_cᵀ b``."""
        return self._apply(b, transpose=True)

    def _apply(self, b: np.ndarray, transpose: bool) -> np.ndarray:
        if self._zero:
            return np.zeros_like(b)
        kind = self._kind
        if kind == "pinv":
            if not transpose:
                return self._pinv @ b
            if self._pinvT is None:
                self._pinvT = np.ascontiguousarray(self._pinv.T)
            return self._pinvT @ b
        if kind == "lu":
            return sla.lu_solve(self._lu, b, trans=1 if transpose else 0)
        if kind == "cholesky":
            return sla.cho_solve(self._cho, b)
        if kind == "splu":
            x = np.zeros_like(b)
            x[self._keep] = self._splu.solve(b[self._keep], trans="T" if transpose else "N")
            return x
        x = np.zeros_like(b)
        if transpose:
            if self._AT is None:
                self._AT = self._A.T.tocsr() if self._A.format != "bsr" else self._A.T
            self._smoother_T(self._AT, x, b)
        else:
            self._smoother(self._A, x, b)
        return x

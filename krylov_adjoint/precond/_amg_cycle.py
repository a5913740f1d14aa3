"""The multigrid cycle of pyamg, and its exact transpose, on a fixed hierarchy.

The forward cycle is pyamg's ``MultilevelSolver`` cycle with zero initial guess (the map
``ml.aspreconditioner(cycle)`` applies), without its residual-norm bookkeeping.

Why the transposed cycle is a cycle on the transposed hierarchy
---------------------------------------------------------------
Each piece of a level cycle is a consistent iteration ``x <- x + W (b - A x)``: the
smoothing steps (see :mod:`._amg_smoothers`) and the coarse-grid correction
``W = P B_c R``. A product of such iterations, ``x <- x + B (b - A x)`` with
``I - B A = (I - W_k A) ... (I - W_1 A)``, has the transpose

    I - Bᵀ Aᵀ = (I - W_1ᵀ Aᵀ) ... (I - W_kᵀ Aᵀ),

that is the iterations ``x <- x + W_jᵀ (b - Aᵀ x)`` on ``Aᵀ`` in reverse order. Hence:

* the transposed post-smoother becomes the pre-smoother and vice versa;
* restriction is ``Pᵀ`` and interpolation ``Rᵀ``;
* the coarse solve ``B_c`` becomes ``B_cᵀ`` (recursively a transposed cycle);
* a W-cycle's two coarse cycles are two transposed coarse cycles;
* an F-cycle's coarse "F-cycle then V-cycle" becomes "transposed V then transposed F".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._amg_smoothers import Smoother

__all__ = ["CycleLevel", "Cycle", "CYCLES"]

CYCLES = ("V", "W", "F")


@dataclass
class CycleLevel:
    """One level of a cycle: its operator, transfer operators and smoothers."""

    A: Any
    restrict: Any = None  # to the next coarser level
    interpolate: Any = None  # from the next coarser level
    pre: Smoother | None = None
    post: Smoother | None = None


class Cycle:
    """A multigrid cycle over ``levels`` ending in ``coarse_solve``.

    Parameters
    ----------
    levels : list of CycleLevel
        Finest first; the last one only provides the coarsest matrix.
    coarse_solve : callable
        ``b -> x`` on the coarsest level.
    transposed : bool
        If True, an F-cycle visits the coarse level as "V then F" (the transpose of pyamg's
        "F then V").
    """

    def __init__(
        self,
        levels: list[CycleLevel],
        coarse_solve: Callable[[np.ndarray], np.ndarray],
        *,
        transposed: bool = False,
    ) -> None:
        self.levels = levels
        self.coarse_solve = coarse_solve
        self.transposed = transposed

    @property
    def takes_blocks(self) -> bool:
        """True when every smoother takes (n, k) blocks at once (see ``Smoother``)."""
        return all(smoother.takes_blocks for level in self.levels
                   for smoother in (level.pre, level.post) if smoother)

    def __call__(self, b: np.ndarray, cycle: str) -> np.ndarray:
        """One cycle for ``b`` from a zero initial guess; returns a new array."""
        if len(self.levels) == 1:
            return np.asarray(self.coarse_solve(b))
        x = np.zeros_like(b)
        self._cycle(0, x, b, cycle, True)
        return x

    def _cycle(self, lvl: int, x: np.ndarray, b: np.ndarray, cycle: str, x_zero: bool) -> None:
        level = self.levels[lvl]
        A = level.A
        if level.pre:
            level.pre(A, x, b)
            x_zero = False
        # b - A @ 0 is b exactly: skip the product when nothing touched the zero guess.
        residual = b if x_zero else b - A @ x
        coarse_b = level.restrict @ residual
        if lvl == len(self.levels) - 2:
            coarse_x = np.asarray(self.coarse_solve(coarse_b)).reshape(coarse_b.shape)
        else:
            coarse_x = np.zeros_like(coarse_b)
            if cycle == "V":
                self._cycle(lvl + 1, coarse_x, coarse_b, "V", True)
            elif cycle == "W":
                self._cycle(lvl + 1, coarse_x, coarse_b, "W", True)
                self._cycle(lvl + 1, coarse_x, coarse_b, "W", False)
            elif self.transposed:  # transposed F-cycle: V first, then F
                self._cycle(lvl + 1, coarse_x, coarse_b, "V", True)
                self._cycle(lvl + 1, coarse_x, coarse_b, "F", False)
            else:  # F-cycle
                self._cycle(lvl + 1, coarse_x, coarse_b, "F", True)
                self._cycle(lvl + 1, coarse_x, coarse_b, "V", False)
        x += level.interpolate @ coarse_x
        if level.post:
            level.post(A, x, b)

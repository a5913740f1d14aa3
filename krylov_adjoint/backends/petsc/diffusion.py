"""Harmonic-mean diffusion −∇·(k∇u) on this rank's block, from the ghosted log-conductivity.

The scheme of the serial gallery (``krylov_adjoint.gallery``): on the face between cells l
and r along axis a, ``T = (2/h²)·k_l k_r/(k_l + k_r)``; on a boundary face ``T = (2/h²)·k``
(Dirichlet 0 half a cell away); ``k = scale·exp(θ)`` per cell.
"""

from __future__ import annotations

import numpy as np

from .dmda import StructuredGrid
from .stencil import FaceIndex, LocalStencil

__all__ = ["LocalDiffusion"]


class LocalDiffusion:
    """Face transmissibilities seen by this rank, their sensitivities, the local stencil.

    Parameters
    ----------
    grid : StructuredGrid
    log_k : ndarray
        The log-conductivity on the ghosted box (``grid.ghosted_shape`` or flat).
    scale : float
        ``k = scale·exp(log_k)``.
    neumann : bool
        Zero-flux boundaries (no boundary faces): A is singular, the constants its nullspace.
    """

    def __init__(self, grid: StructuredGrid, log_k: np.ndarray, scale: float = 1.0, *,
                 neumann: bool = False) -> None:
        self.grid = grid
        k = scale * np.exp(np.asarray(log_k, dtype=np.float64).reshape(grid.ghosted_shape))
        self.faces = tuple(FaceIndex(grid, a) for a in range(grid.ndim))
        self.T: list[np.ndarray] = []
        self.weight_left: list[np.ndarray] = []
        self.low: list[np.ndarray | None] = []
        self.high: list[np.ndarray | None] = []
        owned_k = k[grid.interior]
        for a, f in enumerate(self.faces):
            h2 = (1.0 / grid.shape[a]) ** 2
            K = k[f.box]
            kl, kr = K[f.lower], K[f.upper]
            total = kl + kr
            self.T.append((2.0 / h2) * (kl * kr / total))
            self.weight_left.append(kr / total)
            low, high = (False, False) if neumann else (grid.at_low[a], grid.at_high[a])
            self.low.append((2.0 / h2) * owned_k[f.first] if low else None)
            self.high.append((2.0 / h2) * owned_k[f.last] if high else None)
        self.stencil = LocalStencil.from_fluxes(grid, self.T, self.T, self.low, self.high)

    def vjp_cells(self, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """``[λᵀ(∂A/∂θ_c)x]_c`` for every owned cell c (flat), from ghosted x and λ."""
        grid = self.grid
        X = np.asarray(x).reshape(grid.ghosted_shape)
        L = np.asarray(lam).reshape(grid.ghosted_shape)
        Xo, Lo = X[grid.interior], L[grid.interior]
        grad = np.zeros(grid.owned_shape)
        for a, f in enumerate(self.faces):
            U, V = X[f.box], L[f.box]
            face = self.T[a] * (U[f.lower] - U[f.upper]) * (V[f.lower] - V[f.upper])
            to_left = face * self.weight_left[a]
            grad[f.right_cells] += to_left[f.right_faces]      # c is the face's left cell
            grad[f.left_cells] += (face - to_left)[f.left_faces]
            if self.low[a] is not None:
                grad[f.first] += self.low[a] * Xo[f.first] * Lo[f.first]
            if self.high[a] is not None:
                grad[f.last] += self.high[a] * Xo[f.last] * Lo[f.last]
        return grad.reshape(-1)

    def vjp_jvp_cells(self, x: np.ndarray, lam: np.ndarray, dlog_k: np.ndarray) -> np.ndarray:
        """The derivative of :meth:`vjp_cells` along ``dlog_k`` at fixed x and λ (owned cells).

        On a face with cells l, r: ``T = (2/h²) k_l k_r/(k_l + k_r)`` gives ``∂T/∂θ_l = T w_l``
        with ``w_l = k_r/(k_l + k_r)``, and ``∂w_l/∂θ_r = −∂w_l/∂θ_l = w_l w_r``; the face adds
        ``T w_l (Δx)(Δλ)`` to cell l and ``T w_r (Δx)(Δλ)`` to cell r, whose derivatives along dθ
        are below. A boundary face adds ``T_b x λ`` with ``∂T_b/∂θ = T_b``. (The same as the
        serial gallery's ``vjp_jvp_cells``, on the ghosted box.) x, λ and dθ are ghosted.
        """
        grid = self.grid
        X = np.asarray(x).reshape(grid.ghosted_shape)
        L = np.asarray(lam).reshape(grid.ghosted_shape)
        D = np.asarray(dlog_k).reshape(grid.ghosted_shape)
        Xo, Lo, Do = X[grid.interior], L[grid.interior], D[grid.interior]
        out = np.zeros(grid.owned_shape)
        for a, f in enumerate(self.faces):
            U, V, E = X[f.box], L[f.box], D[f.box]
            wl = self.weight_left[a]
            wr = 1.0 - wl
            products = (U[f.lower] - U[f.upper]) * (V[f.lower] - V[f.upper])
            dT = self.T[a] * (wl * E[f.lower] + wr * E[f.upper])
            T_dwl = self.T[a] * wl * wr * (E[f.upper] - E[f.lower])
            to_lower = products * (dT * wl + T_dwl)
            to_upper = products * (dT * wr - T_dwl)
            out[f.right_cells] += to_lower[f.right_faces]      # the face's lower cell
            out[f.left_cells] += to_upper[f.left_faces]
            if self.low[a] is not None:
                out[f.first] += self.low[a] * Do[f.first] * Xo[f.first] * Lo[f.first]
            if self.high[a] is not None:
                out[f.last] += self.high[a] * Do[f.last] * Xo[f.last] * Lo[f.last]
        return out.reshape(-1)

    def jvp_stencil(self, dlog_k: np.ndarray) -> LocalStencil:
        """The local stencil of ``Σ_c (∂A/∂θ_c) dθ_c``, from dθ on the ghosted box."""
        grid = self.grid
        D = np.asarray(dlog_k).reshape(grid.ghosted_shape)
        Do = D[grid.interior]
        dT, dlow, dhigh = [], [], []
        for a, f in enumerate(self.faces):
            E = D[f.box]
            dT.append(self.T[a] * (E[f.upper] + self.weight_left[a] * (E[f.lower] - E[f.upper])))
            dlow.append(None if self.low[a] is None else self.low[a] * Do[f.first])
            dhigh.append(None if self.high[a] is None else self.high[a] * Do[f.last])
        return LocalStencil.from_fluxes(grid, dT, dT, dlow, dhigh)

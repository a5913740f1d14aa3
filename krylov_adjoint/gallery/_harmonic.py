"""Cell-centred finite-volume diffusion −∇·(k∇u) with a per-cell log-conductivity.

On the face between cells ``l`` and ``r`` along axis ``a`` (spacing ``h``) the flux is
``T (u_l − u_r)`` with ``T = 2 k_l k_r / (k_l + k_r) / h²``, the harmonic mean of the two
conductivities over the centre-to-centre distance, divided by the cell width. On a boundary face
the Dirichlet value 0 sits half a cell away, so ``T = 2 k / h²``. With ``k = s·exp(θ)``:
``∂T/∂θ_l = T k_r / (k_l + k_r)``, ``∂T/∂θ_r = T k_l / (k_l + k_r)``, ``∂T_boundary/∂θ = T``.

Second order: with the weights ``w_l = k_r / (k_l + k_r)`` and ``w_r = 1 − w_l``,
``dT = T (w_l dθ_l + w_r dθ_r)`` and ``dw_l = w_l w_r (dθ_r − dθ_l)``, so the derivative of
``∂T/∂θ_l = T w_l`` along dθ is ``dT w_l + T dw_l`` (and ``dT w_r − T dw_l`` for θ_r).
"""

from __future__ import annotations

import numpy as np

from ._stencil import FluxStencil, boundary_slices, face_cell_indices, interior_slices

__all__ = ["HarmonicDiffusion"]


class HarmonicDiffusion:
    """Face transmissibilities, their sensitivities and the stencil, at one log-conductivity.

    Parameters
    ----------
    log_k : ndarray
        Per-cell log-conductivity, of shape ``shape`` (or flat).
    shape : tuple of int
        The cell grid.
    spacing : tuple of float
        Cell widths along each axis.
    scale : float
        ``k = scale · exp(log_k)``.
    neumann : bool
        Zero-flux boundaries (no boundary faces) instead of ``u = 0``: A is then singular,
        with the constants as its nullspace.

    Examples
    --------
    Two cells of width 1/2 with k = 1: interior T = 4, boundary T = 8:

    >>> import numpy as np
    >>> HarmonicDiffusion(np.zeros(2), (2,), (0.5,)).stencil.assemble().toarray()
    array([[12., -4.],
           [-4., 12.]])
    """

    def __init__(self, log_k: np.ndarray, shape: tuple[int, ...],
                 spacing: tuple[float, ...], scale: float = 1.0, *,
                 neumann: bool = False) -> None:
        self.shape = tuple(shape)
        ndim = len(self.shape)
        k = scale * np.exp(np.asarray(log_k, dtype=np.float64).reshape(self.shape))
        self.T: list[np.ndarray] = []
        self.weight_left: list[np.ndarray] = []
        self.low: list[np.ndarray] = []
        self.high: list[np.ndarray] = []
        for a, h in enumerate(spacing):
            left, right = interior_slices(ndim, a)
            first, last = boundary_slices(ndim, a)
            kl, kr = k[left], k[right]
            total = kl + kr
            self.T.append((2.0 / h**2) * (kl * kr / total))
            self.weight_left.append(kr / total)
            boundary = 0.0 if neumann else 2.0 / h**2
            self.low.append(boundary * k[first])
            self.high.append(boundary * k[last])
        self.stencil = FluxStencil.from_fluxes(self.shape, self.T, self.T, self.low, self.high)

    def vjp_cells(self, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """``[λᵀ (∂A/∂θ_c) x]_c`` for every cell ``c``, flat."""
        ndim = len(self.shape)
        U = np.asarray(x).reshape(self.shape)
        L = np.asarray(lam).reshape(self.shape)
        grad = np.zeros(self.shape)
        for a in range(ndim):
            left, right = interior_slices(ndim, a)
            first, last = boundary_slices(ndim, a)
            face = self.T[a] * (U[left] - U[right]) * (L[left] - L[right])
            to_left = face * self.weight_left[a]
            grad[left] += to_left
            grad[right] += face - to_left
            grad[first] += self.low[a] * U[first] * L[first]
            grad[last] += self.high[a] * U[last] * L[last]
        return grad.reshape(-1)

    def vjp_jvp_cells(self, x: np.ndarray, lam: np.ndarray, dlog_k: np.ndarray) -> np.ndarray:
        """The derivative of :meth:`vjp_cells` along ``dlog_k`` at fixed x and λ, flat."""
        ndim = len(self.shape)
        U = np.asarray(x).reshape(self.shape)
        L = np.asarray(lam).reshape(self.shape)
        D = np.asarray(dlog_k).reshape(self.shape)
        out = np.zeros(self.shape)
        for a in range(ndim):
            left, right = interior_slices(ndim, a)
            first, last = boundary_slices(ndim, a)
            wl = self.weight_left[a]
            wr = 1.0 - wl
            products = (U[left] - U[right]) * (L[left] - L[right])
            dT = self.T[a] * (wl * D[left] + wr * D[right])
            T_dwl = self.T[a] * wl * wr * (D[right] - D[left])
            out[left] += products * (dT * wl + T_dwl)
            out[right] += products * (dT * wr - T_dwl)
            out[first] += self.low[a] * D[first] * U[first] * L[first]
            out[last] += self.high[a] * D[last] * U[last] * L[last]
        return out.reshape(-1)

    def jvp_stencil(self, dlog_k: np.ndarray) -> FluxStencil:
        """The symmetric stencil ``Σ_c (∂A/∂θ_c) dθ_c``."""
        ndim = len(self.shape)
        D = np.asarray(dlog_k).reshape(self.shape)
        dT, dlow, dhigh = [], [], []
        for a in range(ndim):
            left, right = interior_slices(ndim, a)
            first, last = boundary_slices(ndim, a)
            dT.append(self.T[a] * (D[right] + self.weight_left[a] * (D[left] - D[right])))
            dlow.append(self.low[a] * D[first])
            dhigh.append(self.high[a] * D[last])
        return FluxStencil.from_fluxes(self.shape, dT, dT, dlow, dhigh)

    def derivative_entries(self, cell_param: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """COO entries ``(param, row, col, value)`` of every ∂A/∂θ_p.

        ``cell_param[c]`` is the parameter of cell ``c``; entries of one parameter that share a
        position are to be summed.
        """
        params, rows, cols, values = [], [], [], []
        for a in range(len(self.shape)):
            left, right, first, last = face_cell_indices(self.shape, a)
            l, r = left.reshape(-1), right.reshape(-1)
            T = self.T[a].reshape(-1)
            wl = self.weight_left[a].reshape(-1)
            for owner, sens in ((l, T * wl), (r, T * (1.0 - wl))):
                params += [cell_param[owner]] * 4
                rows += [l, r, l, r]
                cols += [l, r, r, l]
                values += [sens, sens, -sens, -sens]
            for cells, diag in ((first, self.low[a]), (last, self.high[a])):
                c = cells.reshape(-1)
                params.append(cell_param[c])
                rows.append(c)
                cols.append(c)
                values.append(diag.reshape(-1))
        return (np.concatenate(params), np.concatenate(rows), np.concatenate(cols),
                np.concatenate(values))

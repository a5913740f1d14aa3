"""Smooth fields and point observations used to synthesise data for the default objectives."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..problem import LeastSquaresMisfit

__all__ = ["cell_centres", "smooth_state", "smooth_state_at", "log_conductivity_field",
           "log_conductivity_at", "point_observations", "observed_cells", "synthetic_misfit"]


def cell_centres(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Broadcastable cell-centre coordinates of a grid on the unit square or cube."""
    ndim = len(shape)
    out = []
    for a, n in enumerate(shape):
        x = (np.arange(n) + 0.5) / n
        out.append(x.reshape([n if b == a else 1 for b in range(ndim)]))
    return out


def smooth_state(shape: tuple[int, ...]) -> np.ndarray:
    """``u(x) = Π sin(π x_a)`` at the cell centres, flat: zero on the boundary."""
    return smooth_state_at(cell_centres(shape))


def smooth_state_at(centres: list[np.ndarray]) -> np.ndarray:
    """:func:`smooth_state` at broadcastable coordinates (a box of cells), flat."""
    u = np.ones(np.broadcast_shapes(*(x.shape for x in centres)))
    for x in centres:
        u = u * np.sin(np.pi * x)
    return u.reshape(-1)


def log_conductivity_field(shape: tuple[int, ...]) -> np.ndarray:
    """A smooth log-conductivity, flat: a conductive and a resistive Gaussian inclusion."""
    return log_conductivity_at(cell_centres(shape))


def log_conductivity_at(centres: list[np.ndarray]) -> np.ndarray:
    """:func:`log_conductivity_field` at broadcastable coordinates (a box of cells), flat."""
    near = sum((x - 0.35) ** 2 for x in centres)
    far = sum((x - (0.7 if a == 0 else 0.6)) ** 2 for a, x in enumerate(centres))
    field = 1.0 * np.exp(-near / (2 * 0.15**2)) - 0.7 * np.exp(-far / (2 * 0.1**2))
    shape = np.broadcast_shapes(*(x.shape for x in centres))
    return np.broadcast_to(field, shape).reshape(-1)


def point_observations(shape: tuple[int, ...], every: int) -> sp.csr_matrix:
    """The matrix picking every ``every``-th cell along each axis (a lattice of point sensors).

    The lattice starts ``every // 2`` cells in (or at the last cell), so every axis has a sensor.

    Examples
    --------
    >>> point_observations((4, 4), 2).shape
    (4, 16)
    """
    cells = np.arange(int(np.prod(shape))).reshape(shape)
    picked = cells[observed_cells(shape, every)].reshape(-1)
    m = picked.size
    return sp.csr_matrix((np.ones(m), (np.arange(m), picked)), shape=(m, cells.size))


def observed_cells(shape: tuple[int, ...], every: int) -> tuple[slice, ...]:
    """The sensor lattice of :func:`point_observations` as one slice per axis."""
    return tuple(slice(min(every // 2, n - 1), None, every) for n in shape)


def synthetic_misfit(shape: tuple[int, ...], every: int, truth: Any, b: np.ndarray,
                     state: np.ndarray | None) -> LeastSquaresMisfit:
    """The default objective: point observations of the true state, ``½‖O u − O u★‖²``.

    ``u★`` is ``state`` when known (manufactured), else the sparse direct solution of
    ``truth.assemble() u★ = b``.
    """
    if state is None:
        state = spla.spsolve(truth.assemble().tocsc(), b)
    O = point_observations(shape, int(every))
    return LeastSquaresMisfit(O, O @ state)

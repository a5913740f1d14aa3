"""First-order upwind convection ``w·∇u`` on a 2-D cell grid, with discretely divergence-free w.

The normal velocity on every face is the difference of a stream function ψ between the two
ends of the face, divided by its length (``w = (∂ψ/∂y, −∂ψ/∂x)``), so the net flux out of every
cell is exactly zero. The face flux is ``w⁺ u_l − w⁻ u_r`` (the upwind value); on the boundary
the inflow value is 0 and the outflow carries the boundary cell's value.
"""

from __future__ import annotations

import numpy as np

from ._stencil import FluxStencil

__all__ = ["VELOCITY_FIELDS", "face_velocities", "upwind_stencil"]

VELOCITY_FIELDS = ("rotating", "constant")


def _stream_function(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if name == "rotating":
        # solid-body rotation about the centre, counter-clockwise, speed 1 at the corners
        return -(np.sqrt(2.0) / 2) * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    angle = np.pi / 6  # unit speed, 30 degrees above the x axis
    return np.cos(angle) * y - np.sin(angle) * x


def face_velocities(shape: tuple[int, int], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Normal velocities on all x-faces, shape (nx+1, ny), and all y-faces, shape (nx, ny+1).

    Examples
    --------
    >>> wx, wy = face_velocities((4, 4), "constant")
    >>> round(float(wx[0, 0]), 6), round(float(wy[0, 0]), 6)
    (0.866025, 0.5)
    """
    nx, ny = shape
    corners_x = np.linspace(0.0, 1.0, nx + 1)[:, None]
    corners_y = np.linspace(0.0, 1.0, ny + 1)[None, :]
    psi = _stream_function(name, corners_x, corners_y)
    wx = (psi[:, 1:] - psi[:, :-1]) * ny
    wy = -(psi[1:, :] - psi[:-1, :]) * nx
    return wx, wy


def upwind_stencil(shape: tuple[int, int], name: str) -> FluxStencil:
    """The upwind convection operator (per unit cell area) of a named velocity field."""
    alpha, beta, low, high = [], [], [], []
    for axis, w in enumerate(face_velocities(shape, name)):
        outward = np.maximum(w, 0.0) * shape[axis]    # w⁺/h: flux towards +e_a
        backward = np.maximum(-w, 0.0) * shape[axis]  # w⁻/h: flux towards −e_a
        inner, first, last = ([slice(None)] * 2 for _ in range(3))
        inner[axis], first[axis], last[axis] = slice(1, -1), slice(0, 1), slice(-1, None)
        alpha.append(outward[tuple(inner)])
        beta.append(backward[tuple(inner)])
        low.append(backward[tuple(first)])
        high.append(outward[tuple(last)])
    return FluxStencil.from_fluxes(shape, alpha, beta, low, high)

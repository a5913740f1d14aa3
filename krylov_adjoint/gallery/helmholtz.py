"""2-D Helmholtz with an impedance boundary, θ a per-cell log squared slowness: complex."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..problem import AdjointProblem, Objective, ParametricOperator
from ._harmonic import HarmonicDiffusion
from ._synthetic import cell_centres
from ._validate import check_grid
from .model import ModelProblem

__all__ = ["helmholtz_2d"]


def helmholtz_2d(n: int, *, omega: float = 12.0, shifted_laplacian: float | None = None,
                 seed: int = 0) -> ModelProblem:
    """−Δu − ω² e^θ u = f on the unit square, ∂u/∂n = iωu on the boundary (impedance).

    θ is the log of the squared slowness per cell (``e^θ = 1/c²``). At the default ω = 12,
    ω² far exceeds the smallest Neumann eigenvalues (π², 2π², ...): A(θ) is indefinite, and
    complex symmetric (Aᵀ = A, not Hermitian) through the impedance term.

    Parameters
    ----------
    n : int
        Cells along each axis; N = P = n².
    omega : float
        The angular frequency.
    shifted_laplacian : float, optional
        β > 0: ``assemble`` returns the shifted Laplacian ``A(θ) + iβω² diag(e^θ)`` (the
        complex-shifted preconditioner of Erlangga, Vuik and Oosterlee) instead of A(θ), so
        that ``preconditioner="lu"`` (or ``"ilu"``) is built from it. None: A(θ) itself.
    seed : int
        Seed of the perturbation giving ``theta = θ★ + 0.1·N(0, 1)``.

    Returns
    -------
    ModelProblem
        A complex problem (``dtype=complex``, ``structure="symmetric"``), b a point-like
        source near the centre, independent of θ; the objective is the misfit of the
        boundary values against those at θ★ (a slow inclusion):
        ``J = ½ Σ_boundary |u − u★|²``.

    Notes
    -----
    Cell-centred finite volumes as in :func:`~krylov_adjoint.gallery.diffusion_2d` (unit
    coefficient); on a boundary face the impedance condition gives the flux ``iωu`` out of
    the cell, hence ``−iω/h`` on the diagonal of that cell's row. ``vjp`` returns
    ``λᴴ(∂A/∂θ)x = −ω² e^θ · conj(λ) x`` per cell (the library uses its real part).

    Examples
    --------
    >>> model = helmholtz_2d(8)
    >>> model.problem.dtype, model.problem.structure.name
    (dtype('complex128'), 'SYMMETRIC')
    >>> A = model.problem.assemble(model.theta)
    >>> bool(abs(A - A.T).max() == 0.0)
    True
    """
    (n, _) = check_grid((n, n))
    if not (isinstance(omega, int | float) and omega > 0):
        raise InputError("omega", f"expected a positive float, got {omega!r}")
    if shifted_laplacian is not None and not shifted_laplacian > 0:
        raise InputError("shifted_laplacian", f"expected β > 0, got {shifted_laplacian!r}")
    shape, h = (n, n), 1.0 / n
    N = n * n
    laplacian = HarmonicDiffusion(np.zeros(N), shape, (h, h), neumann=True).stencil.assemble()
    faces = np.zeros(shape)
    faces[0, :] += 1
    faces[-1, :] += 1
    faces[:, 0] += 1
    faces[:, -1] += 1
    impedance = -1j * omega / h * faces.reshape(-1)
    stiffness = (laplacian + sp.diags(impedance)).tocsr()
    omega2 = float(omega) ** 2

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        return stiffness @ x - omega2 * np.exp(theta) * x

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return -omega2 * np.exp(theta) * np.conj(lam) * x

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return -omega2 * np.exp(theta) * dtheta * x

    shift = 0.0 if shifted_laplacian is None else float(shifted_laplacian)

    def assemble(theta: np.ndarray) -> sp.csr_matrix:
        mass = -omega2 * (1.0 - 1j * shift) * np.exp(theta)
        return (stiffness + sp.diags(mass)).tocsr()

    operator = ParametricOperator(matvec, n=N, vjp=vjp, jvp=jvp, structure="symmetric",
                                  assemble=assemble, dtype=complex)
    X, Y = cell_centres(shape)
    source = np.exp(-((X - 0.5) ** 2 + (Y - 0.45) ** 2) / (2 * 0.05**2)).reshape(-1)
    inclusion = np.exp(-((X - 0.35) ** 2 + (Y - 0.6) ** 2) / (2 * 0.1**2))
    theta_true = np.log(1.0 + 0.5 * inclusion).reshape(-1)
    theta = theta_true + 0.1 * np.random.default_rng(seed).standard_normal(N)
    observed = np.flatnonzero(faces.reshape(-1) > 0)
    truth = sp.csc_matrix(stiffness - sp.diags(omega2 * np.exp(theta_true)))
    data = sp.linalg.spsolve(truth, source.astype(complex))[observed]
    objective = boundary_misfit(observed, data, N)
    problem = AdjointProblem(operator, source.astype(complex), objective, n_params=N)
    return ModelProblem(problem, theta, f"helmholtz_2d[{n}x{n},omega={omega:g}]", shape,
                        theta_true=theta_true)


def boundary_misfit(observed: np.ndarray, data: np.ndarray, n: int) -> Objective:
    """``J = ½ Σ_k |x[observed_k] − data_k|²`` for complex x, with ``dJ_dx`` in the
    convention of docs/method.md: ∂J/∂Re x + i ∂J/∂Im x, i.e. the residual at the observed
    cells (so that dJ = Re(dJ_dxᴴ dx))."""
    def value(theta: np.ndarray, x: np.ndarray) -> float:
        r = x[observed] - data
        return 0.5 * float(np.vdot(r, r).real)

    def gradient(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        g = np.zeros(n, dtype=complex)
        g[observed] = x[observed] - data
        return g

    return Objective(J=value, dJ_dx=gradient)

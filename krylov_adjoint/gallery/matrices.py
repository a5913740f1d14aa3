"""Fixed (θ-independent) model matrices, for preconditioner tests and benchmarks."""

from __future__ import annotations

import scipy.sparse as sp

from ._validate import check_grid, check_positive

__all__ = ["convection_diffusion_matrix"]


def convection_diffusion_matrix(m: int, peclet: float) -> sp.csr_array:
    """Upwind finite differences of ``-Δu + Pe (1, 1/2)·∇u`` on the unit square.

    ``m × m`` interior points (``h = 1/(m+1)``), homogeneous Dirichlet conditions, assembled
    with Kronecker products. Nonsymmetric for ``peclet > 0``: the model matrix of the AMG
    transpose tests and benchmarks (for a θ-dependent problem see
    :func:`convection_diffusion_2d`).

    Examples
    --------
    >>> A = convection_diffusion_matrix(4, 10.0)
    >>> A.shape, A.nnz
    ((16, 16), 64)
    """
    (m,) = check_grid((m,))
    if peclet != 0:
        check_positive(peclet, "peclet")
    h = 1.0 / (m + 1)
    eye = sp.eye_array(m, format="csr")
    second = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m)) / h**2
    upwind = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(m, m)) / h
    kron = sp.kron
    A = kron(eye, second, format="csr") + kron(second, eye, format="csr")
    A = A + peclet * (kron(eye, upwind, format="csr") + 0.5 * kron(upwind, eye, format="csr"))
    A = sp.csr_array(A)
    A.eliminate_zeros()
    return A

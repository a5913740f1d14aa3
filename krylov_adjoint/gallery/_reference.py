"""Explicit derivative matrices ∂A/∂θ_k and ∂b/∂θ, for small reference tests only."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError

__all__ = ["MAX_REFERENCE_SIZE", "check_reference_size", "matrices_from_entries"]

MAX_REFERENCE_SIZE = 5000
"""Largest N for which explicit derivative matrices are formed."""


def check_reference_size(n: int, what: str) -> None:
    """Refuse to form explicit derivatives of a problem with more than 5000 unknowns."""
    if n > MAX_REFERENCE_SIZE:
        raise InputError(
            what,
            f"explicit derivatives are formed only for small reference tests (N <= "
            f"{MAX_REFERENCE_SIZE}), this problem has N = {n}; use the operator's vjp/jvp",
        )


def matrices_from_entries(n: int, n_params: int, params: np.ndarray, rows: np.ndarray,
                          cols: np.ndarray, values: np.ndarray) -> list[sp.csr_matrix]:
    """One CSR matrix per parameter from COO entries ``(param, row, col, value)``.

    Entries of one parameter at the same position are summed.

    Examples
    --------
    >>> import numpy as np
    >>> mats = matrices_from_entries(2, 2, np.array([0, 0, 1]), np.array([0, 0, 1]),
    ...                              np.array([0, 0, 0]), np.array([1.0, 2.0, 5.0]))
    >>> [m.toarray().tolist() for m in mats]
    [[[3.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [5.0, 0.0]]]
    """
    order = np.argsort(params, kind="stable")
    bounds = np.searchsorted(params[order], np.arange(n_params + 1))
    out = []
    for p in range(n_params):
        sel = order[bounds[p]:bounds[p + 1]]
        out.append(sp.csr_matrix((values[sel], (rows[sel], cols[sel])), shape=(n, n)))
    return out

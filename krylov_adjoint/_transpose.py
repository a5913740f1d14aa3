"""The dot-product test's measure: how far a claimed transpose is from the transpose."""

from __future__ import annotations

import math

__all__ = ["transpose_mismatch"]


def transpose_mismatch(forward: float, transposed: float, norm_Au: float,  # noqa: N803
                       norm_v: float, norm_u: float, norm_ATv: float) -> float:  # noqa: N803
    """``|⟨A u, v⟩ − ⟨u, Aᵀ v⟩| / (‖A u‖‖v‖ + ‖u‖‖Aᵀ v‖)``, in [0, 1].

    ``forward`` is ``⟨A u, v⟩`` and ``transposed`` is ``⟨u, Aᵀ v⟩`` (complex numbers for the
    Hermitian inner products of a complex system, Aᴴ in place of Aᵀ).

    By Cauchy–Schwarz each inner product is bounded by its term of the denominator, so the
    measure does not depend on the scaling of A, u or v. A true transpose leaves round-off
    (about ``eps·√n``); a wrong one gives a value of order one. 0 when both products vanish.

    Examples
    --------
    >>> transpose_mismatch(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    0.0
    >>> transpose_mismatch(1.0, -1.0, 1.0, 1.0, 1.0, 1.0)
    1.0
    """
    gap = abs(complex(forward) - complex(transposed))  # real, or Hermitian complex products
    if gap == 0.0:
        return 0.0
    scale = float(norm_Au) * float(norm_v) + float(norm_u) * float(norm_ATv)
    return gap / scale if scale > 0 else math.inf

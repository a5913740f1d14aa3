"""The preconditioner protocol: ``apply`` and ``apply_transpose`` of one linear map.

A preconditioner M ≈ A⁻¹ is used as a *right* preconditioner by the Krylov methods of this
library. The adjoint solve uses ``apply_transpose`` (Mᵀ ≈ A⁻ᵀ) from the same set-up. A
preconditioner that cannot apply its exact transpose must not pretend to.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse.linalg as spla

__all__ = ["Preconditioner", "IdentityPreconditioner", "TransposedPreconditioner", "as_operator"]


@runtime_checkable
class Preconditioner(Protocol):
    """Anything with ``shape``, ``apply(r)`` and ``apply_transpose(r)``.

    ``apply(r)`` returns ``M @ r`` and ``apply_transpose(r)`` returns ``M.T @ r`` (``M.H @ r``,
    the conjugate transpose, for a preconditioner of a complex system) for one and
    the same linear map ``M``; the dot-product test
    :func:`krylov_adjoint.verify.preconditioner_dot_test` checks that they agree.
    """

    shape: tuple[int, int]

    def apply(self, r: np.ndarray) -> np.ndarray:
        """Return ``M @ r``."""
        ...

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        """Return ``M.T @ r`` (``M.H @ r`` for a complex M)."""
        ...


class PreconditionerBase:
    """Mixin giving ``.T`` and :meth:`aslinearoperator` to concrete preconditioners.

    ``is_symmetric`` tells whether ``M = Mᵀ`` by construction: True, False, or None when
    unknown. Conjugate gradients need a symmetric M; :func:`krylov_adjoint.krylov.solve`
    refuses ``method="cg"`` with one that is known not to be.
    """

    shape: tuple[int, int]
    is_symmetric: bool | None = None

    def apply(self, r: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def T(self) -> TransposedPreconditioner:
        """The transposed preconditioner: ``apply`` and ``apply_transpose`` swapped."""
        return TransposedPreconditioner(self)

    def aslinearoperator(self) -> spla.LinearOperator:
        """This preconditioner as a scipy ``LinearOperator`` (``matvec``/``rmatvec``)."""
        return as_operator(self)


class IdentityPreconditioner(PreconditionerBase):
    """No preconditioning: ``M = I``.

    Examples
    --------
    >>> import numpy as np
    >>> M = IdentityPreconditioner(3)
    >>> M.apply(np.ones(3))
    array([1., 1., 1.])
    """

    is_symmetric = True

    def __init__(self, n: int) -> None:
        self.shape = (n, n)

    def apply(self, r: np.ndarray) -> np.ndarray:
        return np.array(r, dtype=np.complex128 if np.iscomplexobj(r) else np.float64,
                        copy=True)

    apply_transpose = apply


class TransposedPreconditioner(PreconditionerBase):
    """View of a preconditioner with ``apply`` and ``apply_transpose`` exchanged."""

    def __init__(self, inner: Preconditioner) -> None:
        self.inner = inner
        self.shape = (inner.shape[1], inner.shape[0])

    @property
    def is_symmetric(self) -> bool | None:  # type: ignore[override]
        """As the wrapped preconditioner's (Mᵀ is symmetric exactly when M is)."""
        return getattr(self.inner, "is_symmetric", None)

    @property
    def accepts_blocks(self) -> bool:
        """As the wrapped preconditioner's: whether it applies (n, k) blocks at once."""
        return bool(getattr(self.inner, "accepts_blocks", False))

    def apply(self, r: np.ndarray) -> np.ndarray:
        return self.inner.apply_transpose(r)

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        return self.inner.apply(r)

    @property
    def T(self) -> Preconditioner:  # type: ignore[override]
        return self.inner


def as_operator(M: Preconditioner) -> spla.LinearOperator:
    """Wrap a preconditioner as a scipy ``LinearOperator`` usable by scipy and pyamg.

    Examples
    --------
    >>> import numpy as np
    >>> op = as_operator(IdentityPreconditioner(2))
    >>> op.rmatvec(np.array([1.0, 2.0]))
    array([1., 2.])
    """
    return spla.LinearOperator(
        M.shape, matvec=M.apply, rmatvec=M.apply_transpose, dtype=np.float64
    )

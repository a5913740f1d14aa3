"""The parametric operator A(θ), given by callbacks only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import as_size, refuse_complex
from ..errors import InputError, MissingCallbackError
from .nullspace import Nullspace
from .structure import Structure

__all__ = ["ParametricOperator"]

Matvec = Callable[[np.ndarray, np.ndarray], np.ndarray]
OperatorVJP = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
OperatorJVP = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
OperatorVJPJVP = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
OperatorJVPTranspose = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Assemble = Callable[[np.ndarray], Any]


def check_operator_callbacks(structure: Structure, matvec: Any, rmatvec: Any, vjp: Any,
                             depends_on_theta: bool, optional: dict[str, Any], *,
                             constant_hint: str) -> Any:
    """Validate an operator's callbacks at construction; return the ``rmatvec`` to use.

    A missing ``rmatvec`` is allowed (and ``matvec`` used) only for a symmetric structure;
    a missing ``vjp`` only when the operator does not depend on θ (``constant_hint`` says
    how to declare that). Every callback given must be callable.
    """
    if not callable(matvec):
        raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
    if rmatvec is None:
        if not structure.is_symmetric:
            raise ValueError(
                "rmatvec is required for a general (nonsymmetric) operator: the adjoint solve "
                "applies A(θ)ᵀ. Pass rmatvec=..., or declare structure='symmetric' or 'spd'."
            )
        rmatvec = matvec
    if depends_on_theta and vjp is None:
        raise ValueError("vjp is required: the gradient needs λᵀ(∂A/∂θ)x. For an operator "
                         f"that does not depend on θ {constant_hint}.")
    for label, fn in {"rmatvec": rmatvec, "vjp": vjp, **optional}.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    return rmatvec


class OperatorCallbacks:
    """The raw callbacks of an operator A(θ), as the bound problem calls them.

    Shared by :class:`ParametricOperator` and the distributed operator; validation of the
    outputs happens in :class:`~krylov_adjoint.problem.bound.BoundProblem`.
    """

    structure: Structure
    depends_on_theta: bool
    _matvec: Matvec
    _rmatvec: Matvec
    _vjp: OperatorVJP | None
    _jvp: OperatorJVP | None
    _vjp_jvp: OperatorVJPJVP | None = None
    _jvp_transpose: OperatorJVPTranspose | None = None
    _assemble: Assemble | None
    _prepare: Callable[[np.ndarray], Any] | None
    #: The bound problem whose θ was prepared last (``prepare`` runs again on a change).
    bound_to: Any = None
    #: The declared nullspace of a singular A(θ) (and of A(θ)ᵀ); None for a nonsingular A.
    nullspace: Nullspace | None = None
    #: float64, or complex128 for a complex system (x, b, λ complex; θ real).
    dtype: np.dtype = np.dtype(np.float64)
    #: True when ``rmatvec`` is derived from ``matvec`` (a symmetric declaration).
    _rmatvec_from_matvec: bool = False
    #: True when ``matvec``, ``rmatvec`` and ``vjp`` also take (N, S) blocks (see
    #: :class:`ParametricOperator`).
    block: bool = False

    def matvec(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``A(theta) @ x`` from the user's callback."""
        return self._matvec(theta, x)

    def rmatvec(self, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``A(theta).T @ y`` from the user's callback (``matvec`` when symmetric)."""
        return self._rmatvec(theta, y)

    def vjp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
        """``lamᵀ (∂A/∂θ) x``; None for an operator that does not depend on θ."""
        return None if self._vjp is None else self._vjp(theta, x, lam)

    def jvp(self, theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray | None:
        """``(∂A/∂θ · dtheta) x``; None for a constant operator."""
        if not self.depends_on_theta:
            return None
        if self._jvp is None:
            raise MissingCallbackError(
                "operator.jvp was not supplied: forward mode needs (∂A/∂θ·dθ)x")
        return self._jvp(theta, x, dtheta)

    def vjp_jvp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                dtheta: np.ndarray) -> np.ndarray | None:
        """``∂/∂θ[lamᵀ(∂A/∂θ)x]·dtheta`` at fixed x and λ; None for a constant operator."""
        if not self.depends_on_theta:
            return None
        if self._vjp_jvp is None:
            raise MissingCallbackError(
                "operator.vjp_jvp was not supplied: the full Hessian needs "
                "∂/∂θ[λᵀ(∂A/∂θ)x]·dθ; gauss_newton_vector_product works without it")
        return self._vjp_jvp(theta, x, lam, dtheta)

    def jvp_transpose(self, theta: np.ndarray, y: np.ndarray,
                      dtheta: np.ndarray) -> np.ndarray | None:
        """``(∂A/∂θ·dtheta)ᵀ y``; None for a constant operator.

        Without a ``jvp_transpose`` callback, ``jvp`` stands in for an operator declared
        symmetric (then every ∂A/∂θ·dθ is symmetric too).
        """
        if not self.depends_on_theta:
            return None
        if self._jvp_transpose is not None:
            return self._jvp_transpose(theta, y, dtheta)
        if self.structure.is_symmetric and self._jvp is not None:
            return self._jvp(theta, y, dtheta)
        raise MissingCallbackError(
            "operator.jvp_transpose was not supplied: the full Hessian needs (∂A/∂θ·dθ)ᵀy "
            "(operator.jvp stands in for it when the operator is declared symmetric); "
            "gauss_newton_vector_product works without it")

    @property
    def missing_second_order(self) -> tuple[str, ...]:
        """The callbacks missing for full Hessian-vector products (empty when none are).

        The full Hessian needs ``jvp`` (the tangent solve), ``vjp_jvp`` and
        ``jvp_transpose`` (``jvp`` stands in for it when declared symmetric).
        """
        if not self.depends_on_theta:
            return ()
        missing = list(self.missing_gauss_newton)
        if self._vjp_jvp is None:
            missing.append("operator.vjp_jvp")
        if self._jvp_transpose is None and not (self.structure.is_symmetric
                                                and self._jvp is not None):
            missing.append("operator.jvp_transpose")
        return tuple(missing)

    @property
    def missing_gauss_newton(self) -> tuple[str, ...]:
        """The callbacks missing for Gauss–Newton products: ``("operator.jvp",)`` or ``()``."""
        return () if self.has_jvp else ("operator.jvp",)

    def prepare(self, theta: np.ndarray) -> None:
        """The user's ``prepare(theta)`` hook (nothing without one)."""
        if self._prepare is not None:
            self._prepare(theta)

    def assemble(self, theta: np.ndarray) -> Any:
        """The user's assembled A(θ) (or its approximation), unchecked."""
        if self._assemble is None:
            raise ValueError("this operator has no assemble callback: pass assemble=... to build "
                             "a matrix-based preconditioner")
        return self._assemble(theta)

    @property
    def symmetric_rmatvec(self) -> bool:
        """True when ``matvec`` stands in for ``rmatvec`` (declared symmetric; for a complex
        symmetric A, ``conj(matvec(conj(y)))``)."""
        return self._rmatvec_from_matvec or self._rmatvec is self._matvec

    @property
    def rmatvec_name(self) -> str:
        """How errors name the transposed product: ``matvec`` stands in when declared symmetric."""
        if self.symmetric_rmatvec:
            return "operator.matvec (as rmatvec: declared symmetric)"
        return "operator.rmatvec"

    @property
    def has_jvp(self) -> bool:
        """True when forward mode is available for this operator."""
        return self._jvp is not None or not self.depends_on_theta

    @property
    def has_assembled(self) -> bool:
        """True when an assembled matrix is available to build preconditioners from."""
        return self._assemble is not None


class ParametricOperator(OperatorCallbacks):
    """A square operator A(θ) known through callbacks.

    Parameters
    ----------
    matvec : callable ``(theta, x) -> A(theta) @ x``
    n : int
        Number of unknowns N (A is N × N): a positive integer (Python or numpy; a float such
        as ``2.5`` or ``3.0`` is refused, not truncated).
    rmatvec : callable ``(theta, y) -> A(theta).T @ y``, optional
        Required unless ``structure`` is ``"symmetric"`` or ``"spd"``.
    vjp : callable ``(theta, x, lam) -> lamᵀ (∂A/∂θ) x``, shape (P,)
        The vector-Jacobian product of θ ↦ A(θ)x, contracted with λ. Required for gradients.
    jvp : callable ``(theta, x, dtheta) -> (∂A/∂θ · dtheta) x``, shape (N,), optional
        Enables forward mode (:meth:`krylov_adjoint.AdjointSolver.directional_derivative`).
    structure : {"general", "symmetric", "spd"}
        Declared for every θ. ``"spd"`` allows CG.
    assemble : callable ``theta -> scipy.sparse matrix``, optional
        An assembled A(θ), or an approximation of it, to build preconditioners from.
    prepare : callable ``theta -> None``, optional
        Called once per new θ, before the other callbacks at that θ: compute θ-dependent
        coefficients there once instead of in every ``matvec``.
    vjp_jvp : callable ``(theta, x, lam, dtheta) -> ∂/∂θ[lamᵀ(∂A/∂θ)x]·dtheta``, optional
        The derivative of ``vjp`` in θ along dθ at fixed x and λ, shape (P,). Needed (with
        ``jvp`` and ``jvp_transpose``) for full Hessian-vector products; Gauss–Newton
        products need only ``jvp``.
    jvp_transpose : callable ``(theta, y, dtheta) -> (∂A/∂θ · dtheta)ᵀ y``, shape (N,), optional
        The transpose of the linear map x ↦ ``jvp(theta, x, dtheta)``. Defaults to ``jvp``
        when ``structure`` is ``"symmetric"`` or ``"spd"``.
    dtype : float64 or complex128
        ``complex`` for a complex system A(θ) x = b(θ) with real θ (frequency-domain wave
        problems): x, b and λ are complex, ``rmatvec`` applies the conjugate transpose
        A(θ)ᴴ, ``vjp`` returns λᴴ(∂A/∂θ)x (its real part is used, see docs/method.md).
        ``structure="symmetric"`` then means complex symmetric (Aᵀ = A; ``rmatvec`` defaults
        to ``conj(matvec(conj(y)))``) and ``"spd"`` Hermitian positive definite (Aᴴ = A).
    nullspace : Nullspace, array (N,) or (N, k), or callable ``theta -> array``, optional
        For a singular A(θ): its nullspace (and that of A(θ)ᵀ, see
        :class:`~krylov_adjoint.problem.nullspace.Nullspace`; an array or a callable is
        ``Nullspace(value)``: the same nullspace for Aᵀ, right-hand sides checked for
        consistency). x is then the minimum-norm solution, orthogonal to the nullspace;
        ``structure="spd"`` then means positive semidefinite with exactly this nullspace.
    block : bool
        Declare that ``matvec`` and ``rmatvec`` also take an (N, S) block X and return the
        (N, S) block A(θ)X (one sparse product for S vectors), and that ``vjp`` also takes
        (N, S) blocks X and Λ and returns ``Σₛ Λ[:, s]ᵀ(∂A/∂θ)X[:, s]``, shape (P,). Used by
        ``sources_gradient`` on the serial backend; without it the columns go one by one.

    Examples
    --------
    A diagonal operator ``A(θ) = diag(θ)``:

    >>> import numpy as np
    >>> op = ParametricOperator(
    ...     matvec=lambda th, x: th * x, n=3, structure="spd",
    ...     vjp=lambda th, x, lam: lam * x, jvp=lambda th, x, dth: dth * x)
    >>> op.matvec(np.array([1.0, 2.0, 3.0]), np.ones(3))
    array([1., 2., 3.])

    Here ∂A/∂θ does not depend on θ, so ``vjp_jvp`` is zero; ``jvp`` stands in for
    ``jvp_transpose`` (declared spd):

    >>> op.missing_second_order
    ('operator.vjp_jvp',)
    >>> op2 = ParametricOperator(
    ...     matvec=lambda th, x: th * x, n=3, structure="spd",
    ...     vjp=lambda th, x, lam: lam * x, jvp=lambda th, x, dth: dth * x,
    ...     vjp_jvp=lambda th, x, lam, dth: np.zeros_like(th))
    >>> op2.missing_second_order
    ()
    >>> op2.jvp_transpose(np.ones(3), np.array([1.0, 2.0, 3.0]), np.ones(3))
    array([1., 2., 3.])

    A singular operator declares its nullspace (here the constants):

    >>> import scipy.sparse as sp
    >>> L = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4)).tolil()
    >>> L[0, 0] = L[3, 3] = 1.0
    >>> op3 = ParametricOperator.constant(L.tocsr(), structure="spd", nullspace=np.ones(4))
    >>> op3.nullspace.rhs
    'check'
    """

    def __init__(self, matvec: Matvec, *, n: int, rmatvec: Matvec | None = None,
                 vjp: OperatorVJP | None = None, jvp: OperatorJVP | None = None,
                 structure: str | Structure = "general", assemble: Assemble | None = None,
                 prepare: Callable[[np.ndarray], Any] | None = None,
                 depends_on_theta: bool = True, vjp_jvp: OperatorVJPJVP | None = None,
                 jvp_transpose: OperatorJVPTranspose | None = None,
                 nullspace: Any = None, dtype: Any = np.float64, block: bool = False) -> None:
        self.structure = Structure.coerce(structure)
        self.dtype = as_field(dtype)
        rmatvec = check_operator_callbacks(
            self.structure, matvec, rmatvec, vjp, depends_on_theta,
            {"jvp": jvp, "assemble": assemble, "prepare": prepare, "vjp_jvp": vjp_jvp,
             "jvp_transpose": jvp_transpose},
            constant_hint="use ParametricOperator.constant(A)")
        if not isinstance(block, bool | np.bool_):
            raise TypeError(f"block must be True or False, got {block!r}")
        self.block = bool(block)
        self.n = as_size(n, "n", minimum=1)
        self._matvec = matvec
        self._rmatvec = rmatvec
        self._vjp = vjp
        self._jvp = jvp
        self._vjp_jvp = vjp_jvp
        self._jvp_transpose = jvp_transpose
        self._assemble = assemble
        self._prepare = prepare
        self.depends_on_theta = depends_on_theta
        self.nullspace = as_nullspace(nullspace)
        complex_symmetric(self)

    @classmethod
    def constant(cls, A: Any, *, structure: str | Structure = "general",
                 nullspace: Any = None, dtype: Any = np.float64) -> ParametricOperator:
        """An operator that does not depend on θ, from a matrix or a scipy ``LinearOperator``.

        Sparse and dense matrices are also used to build preconditioners. Complex matrices
        are refused (:class:`~krylov_adjoint.InputError`) unless ``dtype=complex`` declares a
        complex system.

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> op = ParametricOperator.constant(sp.identity(4, format="csr"), structure="spd")
        >>> op.has_assembled
        True
        """
        field = as_field(dtype)
        if field.kind != "c":
            refuse_complex(A, "A")
        if isinstance(A, np.ndarray) and A.ndim == 2:
            A = sp.csr_matrix(A)
        if sp.issparse(A):
            matrix = sp.csr_matrix(A, dtype=field)
            AT = matrix.conj().T.tocsr()
            assemble: Assemble | None = lambda theta: matrix  # noqa: E731
            mv: Matvec = lambda theta, x: matrix @ x  # noqa: E731
            rmv: Matvec = lambda theta, y: AT @ y  # noqa: E731
        elif isinstance(A, spla.LinearOperator):
            lin = A
            assemble = None
            mv = lambda theta, x: lin.matvec(x)  # noqa: E731
            rmv = lambda theta, y: lin.rmatvec(y)  # noqa: E731
        else:
            raise TypeError(
                "expected a scipy.sparse matrix, a 2-D numpy array or a scipy LinearOperator, "
                f"got {type(A).__name__}"
            )
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"the operator must be square, got shape {A.shape}")
        return cls(mv, n=A.shape[0], rmatvec=rmv, structure=structure, assemble=assemble,
                   vjp=None, jvp=None, depends_on_theta=False, nullspace=nullspace,
                   dtype=field)


def as_field(dtype: Any) -> np.dtype:
    """float64 or complex128 from a declaration (``float``, ``complex``, a numpy dtype)."""
    try:
        field = np.dtype(dtype)
    except TypeError:
        field = None
    if field is None or field.kind not in "fc":
        raise InputError("dtype", f"expected float64 or complex128, got {dtype!r}")
    return np.dtype(np.complex128 if field.kind == "c" else np.float64)


def complex_symmetric(op: OperatorCallbacks) -> None:
    """For a complex operator declared ``"symmetric"`` (Aᵀ = A) without ``rmatvec``: Aᴴy =
    conj(A conj(y)); and the same for ``jvp_transpose`` from ``jvp``. (A declared ``"spd"``
    is Hermitian: ``matvec`` stands in for ``rmatvec`` as for a real one.)"""
    if op.dtype.kind != "c" or op._rmatvec is not op._matvec or op.structure is Structure.SPD:
        return
    matvec = op._matvec
    op._rmatvec = lambda theta, y: np.conj(matvec(theta, np.conj(y)))
    op._rmatvec_from_matvec = True
    jvp = op._jvp
    if op._jvp_transpose is None and jvp is not None:
        op._jvp_transpose = lambda theta, y, dtheta: np.conj(jvp(theta, np.conj(y), dtheta))


def as_nullspace(value: Any) -> Nullspace | None:
    """A :class:`Nullspace` from a declaration (None, a Nullspace, vectors or a callable)."""
    if value is None or isinstance(value, Nullspace):
        return value
    return Nullspace(value)

"""Relaxation steps of an AMG level, each with its exact transpose.

Every smoother supported here is a product of *elementary steps*, and every elementary
step is a consistent stationary iteration

    x <- x + W (b - A x)

for a matrix ``W`` fixed at set-up (a triangular sweep, a scaled diagonal, a polynomial in
``A``). The transpose of such a step, seen as part of a multigrid cycle on ``A``, is the
step ``x <- x + Wᵀ (b - Aᵀ x)`` on ``Aᵀ``, and a product of steps transposes into the
product of transposed steps in reverse order. :meth:`Smoother.transposed` builds exactly
that, so a whole cycle transposes level by level (see :mod:`._amg_cycle`).

The steps call pyamg's own relaxation routines (compiled kernels) with the parameters pyamg
computes at set-up, so the forward smoother is the one pyamg applies. Smoothers that are
not linear maps (Krylov smoothers) or whose transpose is not implemented (Schwarz, the
normal-equation sweeps) are refused by :func:`parse_smoother`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyamg import amg_core
from pyamg.relaxation import relaxation
from pyamg.relaxation.chebyshev import chebyshev_polynomial_coefficients
from pyamg.relaxation.smoothing import matrix_asformat, rho_block_D_inv_A, rho_D_inv_A
from pyamg.util.linalg import approximate_spectral_radius
from pyamg.util.utils import get_block_diag, get_diagonal

__all__ = [
    "SUPPORTED_SMOOTHERS",
    "SmootherSpec",
    "Smoother",
    "parse_smoother",
    "parse_smoother_list",
    "build_smoother",
    "same_steps",
]

#: Smoother names with an implemented transpose, and the options each accepts.
SUPPORTED_SMOOTHERS: dict[str, frozenset[str]] = {
    "gauss_seidel": frozenset({"iterations", "sweep"}),
    "sor": frozenset({"iterations", "sweep", "omega"}),
    "jacobi": frozenset({"iterations", "omega", "withrho"}),
    "richardson": frozenset({"iterations", "omega"}),
    "chebyshev": frozenset({"iterations", "degree", "lower_bound", "upper_bound"}),
    "block_gauss_seidel": frozenset({"iterations", "sweep"}),
    "block_jacobi": frozenset({"iterations", "omega", "withrho"}),
    "gauss_seidel_ne": frozenset({"iterations", "sweep", "omega"}),
    "gauss_seidel_nr": frozenset({"iterations", "sweep", "omega"}),
    "jacobi_ne": frozenset({"iterations", "omega", "withrho"}),
    "cf_jacobi": frozenset({"iterations", "f_iterations", "c_iterations", "omega", "withrho"}),
    "fc_jacobi": frozenset({"iterations", "f_iterations", "c_iterations", "omega", "withrho"}),
    "none": frozenset(),
}

_WHY_NOT = {
    "cg": "a Krylov smoother is not a linear map of the right-hand side",
    "gmres": "a Krylov smoother is not a linear map of the right-hand side",
    "cgne": "a Krylov smoother is not a linear map of the right-hand side",
    "cgnr": "a Krylov smoother is not a linear map of the right-hand side",
    "schwarz": "its transpose is not implemented",
    "strength_based_schwarz": "its transpose is not implemented",
    "cf_block_jacobi": "its transpose is not implemented (use 'cf_jacobi')",
    "fc_block_jacobi": "its transpose is not implemented (use 'fc_jacobi')",
}

_SWEEPS = ("forward", "backward", "symmetric")
_OPPOSITE = {"forward": "backward", "backward": "forward"}
_NEEDS_SPLITTING = ("cf_jacobi", "fc_jacobi")

# Largest tolerated |Dinv_I A_II - I| of a diagonal block for the block smoothers: beyond
# it a block sweep is not a consistent iteration and its transpose would not be exact.
_BLOCK_INVERSE_TOL = 1e-10


@dataclass(frozen=True)
class SmootherSpec:
    """A validated smoother request: a supported name and its options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def as_pyamg(self) -> tuple[str, dict[str, Any]]:
        """The ``(name, options)`` tuple pyamg's ``change_smoothers`` understands."""
        return (self.name, dict(self.options))

    def describe(self) -> str:
        """Short text such as ``gauss_seidel(sweep=symmetric)``."""
        opts = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}({opts})" if opts else self.name


def _supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_SMOOTHERS))


def parse_smoother(spec: Any, role: str = "smoother") -> SmootherSpec:
    """Validate one smoother request in pyamg's format and return its :class:`SmootherSpec`.

    Parameters
    ----------
    spec : str or tuple
        ``"name"`` or ``("name", {options})``; ``"none"`` means no smoothing.
    role : str
        Used in error messages, e.g. ``"presmoother"``.

    Returns
    -------
    SmootherSpec

    Raises
    ------
    ValueError
        If the smoother has no implemented transpose, or an option is unknown or invalid.

    Examples
    --------
    >>> parse_smoother(("gauss_seidel", {"sweep": "forward"})).describe()
    'gauss_seidel(sweep=forward)'
    """
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[1], dict):
            raise ValueError(f"{role}: expected 'name' or ('name', {{options}}), got {spec!r}")
        name, options = spec[0], dict(spec[1])
    else:
        name, options = spec, {}
    if not isinstance(name, str):
        raise ValueError(f"{role}: a smoother name must be a string, got {name!r}")
    if name not in SUPPORTED_SMOOTHERS:
        reason = _WHY_NOT.get(name, "it is not a known smoother")
        raise ValueError(
            f"{role} {name!r} is not supported by AMGPreconditioner: {reason}. "
            f"Smoothers with an exact transposed cycle: {_supported_list()}."
        )
    unknown = set(options) - SUPPORTED_SMOOTHERS[name]
    if unknown:
        allowed = ", ".join(sorted(SUPPORTED_SMOOTHERS[name])) or "none"
        raise ValueError(
            f"{role} {name!r}: unsupported option(s) {sorted(unknown)}; allowed: {allowed}"
        )
    if "sweep" in options and options["sweep"] not in _SWEEPS:
        raise ValueError(f"{role} {name!r}: sweep must be one of {_SWEEPS}")
    for key in ("iterations", "f_iterations", "c_iterations", "degree"):
        if key in options:
            value = options[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{role} {name!r}: {key} must be a non-negative integer")
    for key in ("omega", "lower_bound", "upper_bound"):
        if key in options and not np.isfinite(options[key]):
            raise ValueError(f"{role} {name!r}: {key} must be finite")
    return SmootherSpec(name, options)


def parse_smoother_list(spec: Any, role: str) -> list[SmootherSpec]:
    """Validate a smoother request that may be a per-level list (pyamg's convention).

    The last entry of a list applies to all remaining levels.
    """
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{role}: an empty list of smoothers")
        return [parse_smoother(s, f"{role}[{i}]") for i, s in enumerate(spec)]
    return [parse_smoother(spec, role)]


# ---------------------------------------------------------------------------------------
# Elementary steps. ``step(A, x, b)`` updates x in place; ``step.transposed()`` is the step
# to run on Aᵀ in the transposed cycle.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GaussSeidelSweep:
    sweep: str  # "forward" or "backward"
    omega: float
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        if A.format != "csr":
            relaxation.gauss_seidel(A, x, b, iterations=self.count, sweep=self.sweep,
                                    omega=self.omega)
            return
        # pyamg's CSR kernels, called as relaxation.gauss_seidel calls them.
        n = A.shape[0]
        start, stop, step = (0, n, 1) if self.sweep == "forward" else (n - 1, -1, -1)
        for _ in range(self.count):
            if self.omega != 1.0:
                amg_core.sor_gauss_seidel(A.indptr, A.indices, A.data, x, b, start, stop, step,
                                          self.omega)
            else:
                amg_core.gauss_seidel(A.indptr, A.indices, A.data, x, b, start, stop, step)

    def transposed(self) -> _GaussSeidelSweep:
        # (D + L)^-T = (D + Lᵀ)^-1 is the backward sweep on Aᵀ, and vice versa; SOR keeps ω.
        return _GaussSeidelSweep(_OPPOSITE[self.sweep], self.omega, self.count)


@dataclass(frozen=True)
class _BlockGaussSeidelSweep:
    sweep: str
    blocksize: int
    Dinv: np.ndarray
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        relaxation.block_gauss_seidel(A, x, b, iterations=self.count, sweep=self.sweep,
                                      blocksize=self.blocksize, Dinv=self.Dinv)

    def transposed(self) -> _BlockGaussSeidelSweep:
        DinvT = np.ascontiguousarray(self.Dinv.transpose(0, 2, 1))
        return _BlockGaussSeidelSweep(_OPPOSITE[self.sweep], self.blocksize, DinvT, self.count)


@dataclass(frozen=True)
class _Jacobi:
    omega: float
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        if A.format != "csr":
            relaxation.jacobi(A, x, b, iterations=self.count, omega=self.omega)
            return
        n = A.shape[0]
        temp = np.empty_like(x)
        omega = np.array([self.omega], dtype=A.dtype)
        for _ in range(self.count):
            amg_core.jacobi(A.indptr, A.indices, A.data, x, b, temp, 0, n, 1, omega)

    def transposed(self) -> _Jacobi:
        return self  # ω D⁻¹ is diagonal and Aᵀ has the same diagonal


@dataclass(frozen=True)
class _BlockJacobi:
    omega: float
    blocksize: int
    Dinv: np.ndarray
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        relaxation.block_jacobi(A, x, b, Dinv=self.Dinv, blocksize=self.blocksize,
                                iterations=self.count, omega=self.omega)

    def transposed(self) -> _BlockJacobi:
        DinvT = np.ascontiguousarray(self.Dinv.transpose(0, 2, 1))
        return _BlockJacobi(self.omega, self.blocksize, DinvT, self.count)


@dataclass(frozen=True)
class _IndexedJacobi:
    indices: np.ndarray
    omega: float
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        if A.format != "csr" or A.indptr.dtype != self.indices.dtype:
            relaxation.jacobi_indexed(A, x, b, self.indices, iterations=self.count,
                                      omega=self.omega)
            return
        omega = np.array([self.omega], dtype=A.dtype)
        for _ in range(self.count):
            amg_core.jacobi_indexed(A.indptr, A.indices, A.data, x, b, self.indices, omega)

    def transposed(self) -> _IndexedJacobi:
        return self  # ω D⁻¹ restricted to the index set is diagonal


@dataclass(frozen=True)
class _Polynomial:
    coefficients: tuple[float, ...]
    count: int
    #: Sparse products only: an (n, k) block goes through at once.
    takes_blocks = True

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        # relaxation.polynomial's arithmetic: x += p(A) (b - A x), Horner's rule.
        c = self.coefficients
        for _ in range(self.count):
            residual = b - A @ x if x.any() else b
            h = c[0] * residual
            for coefficient in c[1:]:
                h = coefficient * residual + A @ h
            x += h

    def transposed(self) -> _Polynomial:
        return self  # p(A)ᵀ = p(Aᵀ) with the same coefficients


@dataclass(frozen=True, eq=False)
class _NormalEquationSweep:
    """Kaczmarz sweep (``gauss_seidel_ne``) or its column form (``gauss_seidel_nr``).

    Row ``i`` of the NE sweep is ``x <- x + ω a_i (b_i - a_iᵀx) / |a_i|²`` (``a_iᵀ`` row ``i``
    of A), column ``j`` of the NR sweep is ``x <- x + ω e_j a_jᵀ (b - A x) / |a_j|²``
    (``a_j`` column ``j``). The transpose of a row step of A is the column step of Aᵀ with
    the same weight, so NE on A transposes to NR on Aᵀ in the opposite order, and back.
    ``matrix`` is A in the format the kernel needs (CSR for NE, CSC for NR); ``Dinv`` holds
    the inverse squared row (NE) or column (NR) norms.
    """

    kind: str  # "ne" or "nr"
    sweep: str
    omega: float
    matrix: Any
    Dinv: np.ndarray
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        method = relaxation.gauss_seidel_ne if self.kind == "ne" else relaxation.gauss_seidel_nr
        method(self.matrix, x, b, iterations=self.count, sweep=self.sweep, omega=self.omega,
               Dinv=self.Dinv)

    def transposed(self) -> _NormalEquationSweep:
        # matrix.T turns CSR into CSC (and back) without copying.
        return _NormalEquationSweep("nr" if self.kind == "ne" else "ne",
                                    _OPPOSITE[self.sweep], self.omega, self.matrix.T,
                                    self.Dinv, self.count)


@dataclass(frozen=True, eq=False)
class _JacobiNormalEquation:
    """``jacobi_ne`` (Cimmino): ``x <- x + ω Aᵀ D⁻¹ (b - A x)``, ``D = diag(A Aᵀ)``.

    Its transpose on Aᵀ is ``x <- x + ω D⁻¹ A (b - Aᵀ x)`` (:class:`_JacobiNormalResidual`).
    """

    omega: float
    matrix: Any  # A in CSR
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        relaxation.jacobi_ne(self.matrix, x, b, iterations=self.count, omega=self.omega)

    def transposed(self) -> _JacobiNormalResidual:
        Dinv = np.ravel(get_diagonal(self.matrix, norm_eq=2, inv=True))
        return _JacobiNormalResidual(self.omega, self.matrix, self.matrix.T.tocsr(), Dinv,
                                     self.count)


@dataclass(frozen=True, eq=False)
class _JacobiNormalResidual:
    """``x <- x + ω D⁻¹ Bᵀ (b - B x)`` on ``B = Aᵀ``: the transpose of ``jacobi_ne`` on A."""

    omega: float
    BT: Any  # Bᵀ = A, CSR
    B: Any  # B = Aᵀ, CSR
    Dinv: np.ndarray  # inverse squared column norms of B
    count: int

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        for _ in range(self.count):
            x += self.omega * (self.Dinv * (self.BT @ (b - self.B @ x)))

    def transposed(self) -> _JacobiNormalEquation:
        return _JacobiNormalEquation(self.omega, self.BT, self.count)


@dataclass(frozen=True)
class Smoother:
    """A smoother of one level: elementary steps applied in order.

    ``smoother(A, x, b)`` runs the steps on ``A`` (in place on ``x``).
    :meth:`transposed` returns the smoother to run on ``Aᵀ`` in the transposed cycle.
    """

    label: str
    steps: tuple[Any, ...]

    def __call__(self, A: Any, x: np.ndarray, b: np.ndarray) -> None:
        """The steps on x (a vector, or an (n, k) block of k columns) in place."""
        columns = None  # the compiled sweeps take contiguous vectors: a column-major copy
        for step in self.steps:
            if x.ndim == 1 or getattr(step, "takes_blocks", False):
                if columns is not None:
                    x[...] = columns
                    columns = None
                step(A, x, b)
                continue
            if columns is None:
                columns, b_columns = np.asfortranarray(x), np.asfortranarray(b)
            for j in range(x.shape[1]):
                step(A, columns[:, j], b_columns[:, j])
        if columns is not None:
            x[...] = columns

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def takes_blocks(self) -> bool:
        """True when every step is made of sparse products (polynomial smoothing), which an
        (n, k) block goes through at once; the compiled sweeps go column by column."""
        return all(getattr(step, "takes_blocks", False) for step in self.steps)

    def transposed(self) -> Smoother:
        """The transposed smoother: each step transposed, in reverse order."""
        steps = tuple(step.transposed() for step in reversed(self.steps))
        return Smoother(f"transpose of {self.label}", steps)


def _same_value(a: Any, b: Any) -> bool | None:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape):
            return False
        if np.issubdtype(a.dtype, np.floating):
            # coarse matrices are symmetric to rounding: so are weights computed from them
            return bool(np.allclose(a, b, rtol=1e-12, atol=0.0))
        return bool(np.array_equal(a, b))
    if hasattr(a, "nnz") or hasattr(b, "nnz"):  # a matrix and its transpose: not compared
        return None
    return bool(a == b)


def same_steps(first: Smoother, second: Smoother) -> bool | None:
    """Whether two smoothers run the same steps with the same parameters (None: cannot tell).

    ``same_steps(post, pre.transposed())`` tells that a level's post-smoother is the
    transpose of its pre-smoother, the condition for a symmetric cycle on symmetric A.
    Steps holding a matrix (the normal-equation sweeps) are not compared: None.

    Examples
    --------
    >>> fwd = Smoother("fwd", (_GaussSeidelSweep("forward", 1.0, 1),))
    >>> bwd = Smoother("bwd", (_GaussSeidelSweep("backward", 1.0, 1),))
    >>> same_steps(bwd, fwd.transposed()), same_steps(fwd, fwd.transposed())
    (True, False)
    """
    if len(first.steps) != len(second.steps):
        return False
    unknown = False
    for a, b in zip(first.steps, second.steps, strict=True):
        if type(a) is not type(b):
            return False
        for f in dataclasses.fields(a):
            same = _same_value(getattr(a, f.name), getattr(b, f.name))
            if same is False:
                return False
            unknown = unknown or same is None
    return None if unknown else True


def _blocksize_of(A: Any) -> int:
    return int(A.blocksize[0]) if A.format == "bsr" else 1


def _block_inverse(A: Any, blocksize: int, name: str, level: int) -> np.ndarray:
    """pyamg's inverted diagonal blocks, checked to be true inverses."""
    Dinv = get_block_diag(A, blocksize=blocksize, inv_flag=True)
    D = get_block_diag(A, blocksize=blocksize, inv_flag=False)
    defect = np.abs(Dinv @ D - np.eye(blocksize)).max() if len(D) else 0.0
    if not defect <= _BLOCK_INVERSE_TOL:
        raise ValueError(
            f"smoother {name!r} on level {level}: a {blocksize}x{blocksize} diagonal block is "
            f"singular or ill-conditioned (|Dinv D - I| = {defect:.1e}); a block sweep with a "
            "pseudo-inverse is not a consistent iteration and its transpose is not exact. "
            "Use the point smoother 'gauss_seidel' or 'jacobi' instead."
        )
    return Dinv


def build_smoother(spec: SmootherSpec, level: Any, index: int) -> Smoother:
    """Build the steps of ``spec`` for a pyamg level, with pyamg's set-up parameters.

    The parameters (ω scaled by spectral radii, Chebyshev coefficients, inverted diagonal
    blocks, C/F splitting) are computed exactly as pyamg's ``change_smoothers`` computes
    them; the spectral radii are the values pyamg cached on the level matrix.

    Parameters
    ----------
    spec : SmootherSpec
        The validated request.
    level : pyamg ``MultilevelSolver.Level``
        The level (its ``A`` and, for C/F relaxation, ``splitting``).
    index : int
        The level number, for error messages.

    Returns
    -------
    Smoother
    """
    A = level.A
    opts = spec.options
    name = spec.name
    it = int(opts.get("iterations", 1))
    steps: list[Any] = []

    if name == "none" or it == 0:
        pass
    elif name in ("gauss_seidel", "sor"):
        sweep = opts.get("sweep", "forward")
        omega = float(opts.get("omega", 0.5)) if name == "sor" else 1.0
        if A.format == "bsr":
            omega = 1.0  # pyamg's BSR Gauss-Seidel kernel has no ω: 'sor' is Gauss-Seidel there
        if sweep == "symmetric":
            # pyamg's symmetric sweep is a forward then a backward Gauss-Seidel sweep per
            # iteration, without ω (also for 'sor').
            for _ in range(it):
                steps += [_GaussSeidelSweep("forward", 1.0, 1),
                          _GaussSeidelSweep("backward", 1.0, 1)]
        elif name == "sor":
            steps += [_GaussSeidelSweep(sweep, omega, 1) for _ in range(it)]
        else:
            steps.append(_GaussSeidelSweep(sweep, 1.0, it))
    elif name == "jacobi" or (name == "block_jacobi" and _blocksize_of(A) == 1):
        omega = float(opts.get("omega", 1.0))
        if opts.get("withrho", True):
            omega = omega / rho_D_inv_A(A)
        steps.append(_Jacobi(omega, it))
    elif name == "block_jacobi":
        bs = _blocksize_of(A)
        Dinv = _block_inverse(A, bs, name, index)
        omega = float(opts.get("omega", 1.0))
        if opts.get("withrho", True):
            omega = omega / rho_block_D_inv_A(A, Dinv)
        steps.append(_BlockJacobi(omega, bs, Dinv, it))
    elif name == "block_gauss_seidel":
        bs = _blocksize_of(A)
        sweep = opts.get("sweep", "forward")
        if bs == 1:
            return build_smoother(SmootherSpec("gauss_seidel", opts), level, index)
        Dinv = _block_inverse(A, bs, name, index)
        if sweep == "symmetric":
            for _ in range(it):
                steps += [_BlockGaussSeidelSweep("forward", bs, Dinv, 1),
                          _BlockGaussSeidelSweep("backward", bs, Dinv, 1)]
        else:
            steps.append(_BlockGaussSeidelSweep(sweep, bs, Dinv, it))
    elif name == "richardson":
        omega = float(opts.get("omega", 1.0)) / approximate_spectral_radius(A)
        steps.append(_Polynomial((omega,), it))
    elif name == "chebyshev":
        rho = approximate_spectral_radius(A)
        lower = rho * float(opts.get("lower_bound", 1.0 / 30.0))
        upper = rho * float(opts.get("upper_bound", 1.1))
        coefficients = -chebyshev_polynomial_coefficients(lower, upper, int(opts.get("degree", 3)))
        steps.append(_Polynomial(tuple(float(c) for c in coefficients[:-1]), it))
    elif name in ("gauss_seidel_ne", "gauss_seidel_nr"):
        kind = name[-2:]
        # pyamg's own converted copy of A (cached on the level), with its norms.
        matrix = matrix_asformat(level, "A", "csr" if kind == "ne" else "csc")
        Dinv = np.ravel(get_diagonal(matrix, norm_eq=2 if kind == "ne" else 1, inv=True))
        sweep = opts.get("sweep", "forward")
        omega = float(opts.get("omega", 1.0))
        if sweep == "symmetric":
            for _ in range(it):
                steps += [_NormalEquationSweep(kind, "forward", omega, matrix, Dinv, 1),
                          _NormalEquationSweep(kind, "backward", omega, matrix, Dinv, 1)]
        else:
            steps.append(_NormalEquationSweep(kind, sweep, omega, matrix, Dinv, it))
    elif name == "jacobi_ne":
        matrix = matrix_asformat(level, "A", "csr")
        omega = float(opts.get("omega", 1.0))
        if opts.get("withrho", True):
            omega = omega / rho_D_inv_A(matrix) ** 2
        steps.append(_JacobiNormalEquation(omega, matrix, it))
    elif name in _NEEDS_SPLITTING:
        splitting = getattr(level, "splitting", None)
        if splitting is None:
            raise ValueError(
                f"smoother {name!r} needs a C/F splitting; use method='rs' or method='air'"
            )
        Fpts = np.flatnonzero(~np.asarray(splitting, dtype=bool))
        Cpts = np.flatnonzero(np.asarray(splitting, dtype=bool))
        omega = float(opts.get("omega", 1.0))
        if opts.get("withrho", False):
            omega = omega / rho_D_inv_A(A)
        f_step = _IndexedJacobi(Fpts.astype(A.indptr.dtype), omega,
                                int(opts.get("f_iterations", 1)))
        c_step = _IndexedJacobi(Cpts.astype(A.indptr.dtype), omega,
                                int(opts.get("c_iterations", 1)))
        order = (f_step, c_step) if name == "fc_jacobi" else (c_step, f_step)
        for _ in range(it):
            steps += [s for s in order if s.count > 0]
    else:  # pragma: no cover - parse_smoother refuses everything else
        raise ValueError(f"smoother {name!r} is not supported")
    return Smoother(spec.describe(), tuple(steps))


def spec_for_level(specs: Sequence[SmootherSpec], index: int) -> SmootherSpec:
    """pyamg's rule: entry ``index`` of the list, or its last entry beyond the end."""
    return specs[min(index, len(specs) - 1)]

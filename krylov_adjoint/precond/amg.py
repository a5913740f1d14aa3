"""Algebraic multigrid preconditioning with an exact transposed cycle.

pyamg's ``MultilevelSolver.aspreconditioner()`` returns an operator without ``rmatvec``, so
the adjoint system ``Aᵀλ = g`` tends to be preconditioned with ``M`` instead of ``Mᵀ``.
:class:`AMGPreconditioner` builds the hierarchy once with pyamg, applies pyamg's cycle as
``M`` and the exact transpose of that same linear map as ``Mᵀ``: restriction and
interpolation exchange roles (``Pᵀ`` restricts, ``Rᵀ`` interpolates), each smoother is
replaced by its transpose on ``Aᵀ`` and pre- and post-smoothing are exchanged, and the coarse
solve is transposed. The per-level transposed matrices are formed once, on the first
:meth:`AMGPreconditioner.apply_transpose`.
"""

from __future__ import annotations

import copy
import inspect
import time
from typing import Any

import numpy as np
import pyamg

from ._amg_coarse import CoarseSolver, parse_coarse_solver
from ._amg_cycle import Cycle, CycleLevel
from ._amg_setup import (
    AMG_METHODS,
    _as_float_csr,
    _checked_cycle,
    _fast_format,
    _is_hermitian,
    _is_transpose,
    _pyamg_option_names,
    _pyamg_solver,
    _same_matrix,
    _symmetry,
    _transpose_of,
)
from ._amg_smoothers import (
    build_smoother,
    parse_smoother_list,
    same_steps,
    spec_for_level,
)
from .base import PreconditionerBase

__all__ = ["AMGPreconditioner", "AMG_METHODS"]


_SYMMETRIC_GS = ("gauss_seidel", {"sweep": "symmetric"})

_AIR_RELAXATION = {"omega": 1.0, "iterations": 1, "withrho": False, "f_iterations": 2,
                   "c_iterations": 1}

# Default smoothers per method: pre- and post-smoothing whose transposes have the same
# structure, so that Mᵀ preconditions Aᵀ as well as M preconditions A.
# - sa: the point symmetric Gauss-Seidel sweep; identical to pyamg's default
#   'block_gauss_seidel' on scalar problems, and transposable also when a near-nullspace with
#   several vectors gives coarse levels singular diagonal blocks.
# - air: pyamg's F-then-C Jacobi post-smoothing, plus its reverse, C-then-F, as
#   pre-smoothing. pyamg's default has no pre-smoothing, so its transposed cycle has no
#   post-smoothing, and the adjoint then needed up to 30% more iterations than the primal
#   solve (88 against 68 at Péclet 10, 10⁶ unknowns); with both, the counts agree.
_DEFAULT_SMOOTHERS: dict[str, tuple[Any, Any]] = {
    "sa": (_SYMMETRIC_GS, _SYMMETRIC_GS),
    "rs": (_SYMMETRIC_GS, _SYMMETRIC_GS),
    "air": (("cf_jacobi", _AIR_RELAXATION), ("fc_jacobi", _AIR_RELAXATION)),
}

# Levels up to this many rows have their smoothers checked against pyamg's at set-up.
_CHECK_MAX_ROWS = 20_000

class AMGPreconditioner(PreconditionerBase):
    """Algebraic multigrid preconditioner ``M`` with its exact transpose ``Mᵀ``.

    One multigrid cycle with zero initial guess is the linear map ``M ≈ A⁻¹`` (the map of
    pyamg's ``ml.aspreconditioner(cycle)``); :meth:`apply_transpose` applies ``Mᵀ``, the
    transposed cycle on the same hierarchy, for adjoint solves with ``Aᵀ``.

    Parameters
    ----------
    A : scipy.sparse matrix
        The assembled matrix ``A(θ)`` or an approximation of it; converted to CSR float64,
        or complex128 for a complex matrix: pyamg's cycle on the complex hierarchy (smoothed
        aggregation with ``symmetry="hermitian"``, ``"symmetric"`` for a complex symmetric
        A, or ``"nonsymmetric"``), and ``apply_transpose`` its conjugate transpose
        ``Mᴴ r = conj(Mᵀ conj(r))``, from the same exact transposed cycle.
    method : {"sa", "rs", "air"}
        Smoothed aggregation (``pyamg.smoothed_aggregation_solver``), classical Ruge–Stüben
        (``pyamg.ruge_stuben_solver``), or approximate ideal restriction
        (``pyamg.air_solver``, for advection-dominated problems).
    cycle : {"V", "W", "F"}
        The cycle applied by :meth:`apply` (and transposed by :meth:`apply_transpose`).
    presmoother, postsmoother : str, tuple, list or None
        pyamg's smoother format: ``"name"``, ``("name", {options})`` or a per-level list of
        those (the last entry applies to the remaining levels). ``None`` selects the method's
        default; ``"none"`` means no smoothing. Smoothers with an implemented transpose:
        ``gauss_seidel`` (``sweep`` forward, backward or symmetric), ``sor``, ``jacobi``,
        ``richardson``, ``chebyshev``, ``block_gauss_seidel``, ``block_jacobi``,
        ``gauss_seidel_ne``, ``gauss_seidel_nr``, ``jacobi_ne``, ``cf_jacobi`` and
        ``fc_jacobi`` (``rs`` and ``air`` only) and ``none``; any other (Krylov smoothers,
        Schwarz) is refused with a ``ValueError``. Defaults: symmetric Gauss–Seidel for
        ``sa`` and ``rs``; for ``air`` pyamg's F-then-C Jacobi post-smoothing (``fc_jacobi``,
        2 F-sweeps and 1 C-sweep) and its reverse, ``cf_jacobi``, as pre-smoothing, so that
        the transposed cycle has the same structure (pass ``presmoother="none"`` for pyamg's
        post-smoothing only, whose transpose preconditions ``Aᵀ`` less well).
    symmetric : bool, optional
        Whether ``A`` is symmetric. For ``sa`` it selects pyamg's ``symmetry="hermitian"``
        or ``"nonsymmetric"``. If None, ``A`` is tested once (``max|A - Aᵀ| <= 1e-12
        max|A|``).
    near_nullspace : array_like, shape (n, k), optional
        Near-nullspace vectors for ``sa`` (pyamg's ``B``), e.g. rigid-body modes.
    max_levels, max_coarse : int, optional
        Hierarchy size limits; None keeps pyamg's default for the method.
    coarse_solver : str or tuple
        ``"pinv"`` (default, as pyamg), ``"lu"``, ``"splu"``, ``"cholesky"``, a supported
        relaxation method, or ``"none"``.
    **pyamg_options
        Passed to the pyamg set-up function (e.g. ``strength``, ``smooth``, ``CF``).

    Attributes
    ----------
    hierarchy : pyamg.multilevel.MultilevelSolver
        The pyamg hierarchy (its ``solve`` and ``aspreconditioner`` use the same smoothers).
    shape : tuple of int
    levels : int
        Number of levels.
    operator_complexity : float
        Nonzeros on all levels over nonzeros of ``A``.
    setup_seconds : float
        Wall time of the set-up (pyamg hierarchy and smoother parameters).
    transpose_setup_seconds : float or None
        Wall time spent forming the transposed levels, once, on the first
        :meth:`apply_transpose`; None before.
    symmetric : bool
        Whether ``A`` is taken as symmetric (tested on first use unless given).
    is_symmetric : bool or None
        Whether the cycle itself is a symmetric map (``M = Mᵀ``), as conjugate gradients
        need; :attr:`asymmetry` says why not.

    Raises
    ------
    ValueError
        For a non-square, empty or non-finite ``A``, an unknown method or cycle, or
        a smoother or coarse solver without an implemented transpose.
    TypeError
        If ``A`` is not a sparse matrix or a 2-D array.

    Notes
    -----
    Why the transpose is exact: every smoothing step is a consistent iteration
    ``x ← x + W(b − Ax)`` and so is the coarse-grid correction (``W = P B_c R``); the
    transpose of a product of such steps is the product of ``x ← x + Wᵀ(b − Aᵀx)`` in
    reverse order. Forward Gauss–Seidel on ``A`` becomes backward Gauss–Seidel on ``Aᵀ``,
    symmetric stays symmetric, Jacobi, Richardson and Chebyshev keep their weights and
    coefficients, a Kaczmarz (``gauss_seidel_ne``) sweep on ``A`` becomes a reversed
    ``gauss_seidel_nr`` sweep on ``Aᵀ`` (and back), several sweeps and F/C orders run
    reversed, and an F-cycle's coarse "F then V" becomes "V then F". The dot test
    ``⟨Mu, v⟩ = ⟨u, Mᵀv⟩`` holds to rounding.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from pyamg.gallery import poisson
    >>> n = 30
    >>> A = poisson((n, n), format="csr") + sp.diags(np.linspace(0, 1, n * n)) @ sp.eye(
    ...     n * n, k=1)  # a nonsymmetric perturbation
    >>> M = AMGPreconditioner(A, method="sa")
    >>> M.symmetric, M.shape
    (False, (900, 900))
    >>> rng = np.random.default_rng(0)
    >>> u, v = rng.standard_normal(900), rng.standard_normal(900)
    >>> err = abs(M.apply(u) @ v - u @ M.apply_transpose(v))
    >>> bool(err <= 1e-12 * np.linalg.norm(M.apply(u)) * np.linalg.norm(v))
    True
    """


    def __init__(
        self,
        A: Any,
        *,
        method: str = "sa",
        cycle: str = "V",
        presmoother: Any = None,
        postsmoother: Any = None,
        symmetric: bool | None = None,
        near_nullspace: Any = None,
        max_levels: int | None = None,
        max_coarse: int | None = None,
        coarse_solver: Any = "pinv",
        **pyamg_options: Any,
    ) -> None:
        start = time.perf_counter()
        self.check_options({"method": method, **pyamg_options})
        solver = _pyamg_solver(method)
        cycle = _checked_cycle(cycle)
        matrix = _as_float_csr(A)
        n = matrix.shape[0]

        default_pre, default_post = _DEFAULT_SMOOTHERS[method]
        pre_specs = parse_smoother_list(
            default_pre if presmoother is None else presmoother, "presmoother")
        post_specs = parse_smoother_list(
            default_post if postsmoother is None else postsmoother, "postsmoother")
        if method == "sa":
            for spec in pre_specs + post_specs:
                if spec.name in ("cf_jacobi", "fc_jacobi"):
                    raise ValueError(
                        f"smoother {spec.name!r} needs a C/F splitting: use method='rs' or "
                        "method='air'"
                    )
        coarse_name, coarse_options = parse_coarse_solver(coarse_solver)

        # The symmetry test costs a transposition: done here only when the set-up needs it
        # (smoothed aggregation), otherwise on first use of the ``symmetric`` attribute.
        self._matrix = matrix
        self._exactly_symmetric: bool | None = None
        self._symmetric: bool | None = None if symmetric is None else bool(symmetric)
        self._symmetric_declared = symmetric is not None

        options = dict(pyamg_options)
        if near_nullspace is not None:
            if method != "sa":
                raise ValueError("AMGPreconditioner: near_nullspace is used by method='sa' only")
            B = np.asarray(near_nullspace, dtype=np.float64)
            if B.ndim == 1:
                B = B[:, None]
            if B.ndim != 2 or B.shape[0] != n:
                raise ValueError(
                    f"AMGPreconditioner: near_nullspace must have shape ({n}, k), got {B.shape}"
                )
            if not np.all(np.isfinite(B)):
                raise ValueError("AMGPreconditioner: near_nullspace has non-finite entries")
            options["B"] = B
        if method == "sa" and "symmetry" not in options:
            if matrix.dtype.kind == "c":  # Hermitian, complex symmetric (Aᵀ = A) or neither
                options["symmetry"] = ("hermitian" if _is_hermitian(matrix) else
                                       "symmetric" if self.symmetric else "nonsymmetric")
            else:
                options["symmetry"] = "hermitian" if self.symmetric else "nonsymmetric"
        if max_levels is not None:
            options["max_levels"] = int(max_levels)
        if max_coarse is not None:
            options["max_coarse"] = int(max_coarse)
        options["presmoother"] = [s.as_pyamg() for s in pre_specs]
        options["postsmoother"] = [s.as_pyamg() for s in post_specs]
        options["coarse_solver"] = (None if coarse_name == "none"
                                    else (coarse_name, dict(coarse_options)))

        self.hierarchy = solver(matrix, **options)

        self.shape = (n, n)
        self.method = method
        self.cycle = cycle
        self._pre_specs = pre_specs
        self._post_specs = post_specs
        self._coarse_name = coarse_name
        self._coarse_options = dict(coarse_options)
        self._forward = self._build_forward(coarse_options)
        self._transposed: Cycle | None = None
        self._map_symmetry: tuple[bool | None, str] | None = None
        self.transpose_setup_seconds: float | None = None
        self.setup_seconds = time.perf_counter() - start

    @classmethod
    def option_names(cls, method: str = "sa") -> tuple[str, ...]:
        """The keyword arguments accepted with ``method``: the constructor's own, then the
        options forwarded to pyamg's set-up function for that method.

        Examples
        --------
        >>> names = AMGPreconditioner.option_names("rs")
        >>> names[:3], "CF" in names, "aggregate" in names
        (('method', 'cycle', 'presmoother'), True, False)
        """
        own = [p.name for p in inspect.signature(cls).parameters.values()
               if p.kind is p.KEYWORD_ONLY]
        return (*own, *sorted(_pyamg_option_names(method)))

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Refuse options that :class:`AMGPreconditioner` would not accept, without setting
        anything up: an unknown ``method``, pyamg's ``B`` (pass ``near_nullspace``), or a
        name that neither the constructor nor the method's pyamg set-up function takes.

        Raises
        ------
        ValueError
            Listing the accepted names.

        Examples
        --------
        >>> AMGPreconditioner.check_options({"method": "sa", "strength": "symmetric"})
        >>> AMGPreconditioner.check_options({"methd": "sa"})
        Traceback (most recent call last):
        ...
        ValueError: AMGPreconditioner: unknown option 'methd' (method='sa'); accepted: ...
        """
        method = options.get("method", "sa")
        _pyamg_solver(method)
        if "B" in options:
            raise ValueError("AMGPreconditioner: pass pyamg's B as near_nullspace=")
        accepted = cls.option_names(method)
        unknown = [name for name in options if name not in accepted]
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            raise ValueError(
                f"AMGPreconditioner: unknown option{plural} "
                f"{', '.join(repr(name) for name in unknown)} (method={method!r}); accepted: "
                f"{', '.join(accepted)}"
            )

    @classmethod
    def from_hierarchy(cls, hierarchy: Any, *, cycle: str = "V", presmoother: Any = None,
                       postsmoother: Any = None, coarse_solver: Any = "pinv",
                       symmetric: bool | None = None) -> AMGPreconditioner:
        """Wrap a pyamg hierarchy set up elsewhere, with its exact transposed cycle.

        ``M`` is the cycle of ``hierarchy.aspreconditioner(cycle)``, and ``Mᵀ`` its
        transpose on the same levels. pyamg does not record which smoothers and coarse solver
        a hierarchy was given, so pass them here as they were given to pyamg (the defaults
        are pyamg's for ``smoothed_aggregation_solver`` and ``ruge_stuben_solver``:
        symmetric Gauss–Seidel and ``"pinv"``); the set-up checks that one cycle reproduces
        ``hierarchy.aspreconditioner(cycle)`` on a random vector and refuses the hierarchy
        otherwise. The hierarchy is used, not copied.

        Parameters
        ----------
        hierarchy : pyamg.multilevel.MultilevelSolver
        cycle : {"V", "W", "F"}
        presmoother, postsmoother, coarse_solver
            As for the constructor, and as given to pyamg when ``hierarchy`` was built.
        symmetric : bool, optional
            Whether the finest matrix is symmetric; tested once if None.

        Returns
        -------
        AMGPreconditioner
            With ``method == "hierarchy"``.

        Raises
        ------
        TypeError
            If ``hierarchy`` is not a pyamg ``MultilevelSolver``.
        ValueError
            If the cycle with these smoothers and coarse solver does not reproduce the
            hierarchy's own, or for a finest matrix AMG cannot use (zero diagonal, NaN).

        Examples
        --------
        >>> import numpy as np
        >>> import pyamg
        >>> from pyamg.gallery import poisson
        >>> ml = pyamg.ruge_stuben_solver(poisson((20, 20), format="csr"))
        >>> M = AMGPreconditioner.from_hierarchy(ml)
        >>> r = np.ones(400)
        >>> bool(np.allclose(M.apply(r), ml.aspreconditioner().matvec(r)))
        True
        >>> M.is_symmetric
        True
        """
        start = time.perf_counter()
        if not isinstance(hierarchy, pyamg.multilevel.MultilevelSolver):
            raise TypeError("AMGPreconditioner.from_hierarchy: expected a pyamg "
                            f"MultilevelSolver, got {type(hierarchy).__name__}")
        cycle = _checked_cycle(cycle)
        pre_specs = parse_smoother_list(
            _SYMMETRIC_GS if presmoother is None else presmoother, "presmoother")
        post_specs = parse_smoother_list(
            _SYMMETRIC_GS if postsmoother is None else postsmoother, "postsmoother")
        coarse_name, coarse_options = parse_coarse_solver(coarse_solver)
        self = cls.__new__(cls)
        self._matrix = _as_float_csr(hierarchy.levels[0].A)
        self._exactly_symmetric = None
        self._symmetric = None if symmetric is None else bool(symmetric)
        self._symmetric_declared = symmetric is not None
        self.hierarchy = hierarchy
        self.shape = self._matrix.shape
        self.method = "hierarchy"
        self.cycle = cycle
        self._pre_specs = pre_specs
        self._post_specs = post_specs
        self._coarse_name = coarse_name
        self._coarse_options = dict(coarse_options)
        self._forward = self._build_forward(coarse_options, check=False)
        self._check_reproduces_hierarchy(presmoother, postsmoother, coarse_solver)
        self._transposed = None
        self._map_symmetry = None
        self.transpose_setup_seconds = None
        self.setup_seconds = time.perf_counter() - start
        return self

    def refreshed(self, A: Any) -> AMGPreconditioner:
        """The same coarsening at new matrix values: a set-up that keeps this hierarchy's
        interpolation and restriction and recomputes the rest.

        The Galerkin coarse operators ``A_{l+1} = R_l A_l P_l``, the smoothers and the coarse
        solver are set up anew from ``A``, as PETSc's GAMG does with
        ``-pc_gamg_reuse_interpolation``; the strength graph, the aggregation or C/F
        splitting and the smoothing of the prolongators (with its spectral-radius estimates)
        are skipped: most of a smoothed-aggregation set-up. The coarsening was chosen for the
        matrix of the full set-up, so the convergence may degrade as ``A`` drifts from it;
        the gradient engine's reuse rule then asks for a full set-up
        (:class:`~krylov_adjoint.adjoint.reuse.PreconditionerReuse`).

        Parameters
        ----------
        A : scipy.sparse matrix
            The new matrix, of this preconditioner's shape and field.

        Returns
        -------
        AMGPreconditioner
            A new preconditioner; this one is unchanged (the interpolation matrices are
            shared, not copied).

        Raises
        ------
        ValueError
            For a matrix of another shape or field, or one AMG cannot use.

        Examples
        --------
        >>> import numpy as np
        >>> from pyamg.gallery import poisson
        >>> A = poisson((30, 30), format="csr")
        >>> M = AMGPreconditioner(A)
        >>> same = M.refreshed(A)                      # the same matrix: the same cycle
        >>> r = np.ones(900)
        >>> bool(np.allclose(same.apply(r), M.apply(r), rtol=1e-13, atol=0.0))
        True
        >>> scaled = M.refreshed(2.0 * A)             # coarse operators scaled too: M / 2
        >>> bool(np.allclose(scaled.apply(r), M.apply(r) / 2, rtol=1e-12, atol=0.0))
        True
        """
        start = time.perf_counter()
        matrix = _as_float_csr(A)
        if matrix.shape != self.shape or matrix.dtype != self.dtype:
            raise ValueError(
                f"AMGPreconditioner.refreshed: A has shape {matrix.shape} and dtype "
                f"{matrix.dtype}, the hierarchy was built for {self.shape} and {self.dtype}")
        levels = []
        current: Any = matrix
        old_levels = self.hierarchy.levels
        for old, coarser in zip(old_levels[:-1], old_levels[1:], strict=True):
            level = copy.copy(old)  # P, R (and B, splitting) kept; smoothers set up below
            level.A = current
            levels.append(level)
            current = _like(old.R @ current @ old.P, coarser.A)
        last = copy.copy(self.hierarchy.levels[-1])
        last.A = current
        levels.append(last)
        hierarchy = pyamg.multilevel.MultilevelSolver(
            levels, coarse_solver=(None if self._coarse_name == "none"
                                   else (self._coarse_name, dict(self._coarse_options))))
        pyamg.relaxation.smoothing.change_smoothers(
            hierarchy, [s.as_pyamg() for s in self._pre_specs],
            [s.as_pyamg() for s in self._post_specs])
        new = copy.copy(self)
        new._matrix = matrix
        new._exactly_symmetric = None
        # a declared symmetry holds; a tested one is tested again (the new values may break it)
        new._symmetric = self._symmetric if self._symmetric_declared else None
        new.hierarchy = hierarchy
        new._forward = new._build_forward(self._coarse_options)
        new._transposed = None
        new._map_symmetry = None
        new.transpose_setup_seconds = None
        new.setup_seconds = time.perf_counter() - start
        return new

    def _check_reproduces_hierarchy(self, presmoother: Any, postsmoother: Any,
                                    coarse_solver: Any) -> None:
        """Refuse a hierarchy whose own cycle differs from the one built on it."""
        b = np.random.default_rng(0).standard_normal(self.shape[0])
        theirs = np.asarray(self.hierarchy.aspreconditioner(self.cycle).matvec(b)).ravel()
        ours = self._forward(b, self.cycle)
        scale = max(float(np.abs(theirs).max()), float(np.abs(b).max()))
        if not float(np.abs(ours - theirs).max()) <= 1e-10 * scale:
            raise ValueError(
                "AMGPreconditioner.from_hierarchy: a cycle with presmoother="
                f"{presmoother!r}, postsmoother={postsmoother!r} and coarse_solver="
                f"{coarse_solver!r} does not reproduce this hierarchy's own "
                f"{self.cycle}-cycle (ml.aspreconditioner): pass the smoothers and coarse "
                "solver the hierarchy was built with (None means symmetric Gauss-Seidel, "
                "pyamg's default for smoothed aggregation and Ruge-Stueben)"
            )

    @property
    def symmetric(self) -> bool:
        """Whether ``A`` is (taken as) symmetric: the ``symmetric`` argument, or the test
        ``max|A - Aᵀ| <= 1e-12 max|A|`` done once."""
        if self._symmetric is None:
            self._symmetric, self._exactly_symmetric = _symmetry(self._matrix)
        return self._symmetric

    # ------------------------------------------------------------------ set-up helpers
    def _build_forward(self, coarse_options: dict[str, Any], *, check: bool = True) -> Cycle:
        ml_levels = self.hierarchy.levels
        for level in ml_levels:
            # Diagonal duplicates would make a Gauss-Seidel row update inconsistent.
            if not level.A.has_canonical_format:
                level.A.sum_duplicates()
        levels = []
        for i, level in enumerate(ml_levels[:-1]):
            pre = build_smoother(spec_for_level(self._pre_specs, i), level, i)
            post = build_smoother(spec_for_level(self._post_specs, i), level, i)
            levels.append(CycleLevel(_fast_format(level.A), _fast_format(level.R),
                                     _fast_format(level.P), pre, post))
        levels.append(CycleLevel(_fast_format(ml_levels[-1].A)))
        self._coarse = CoarseSolver(ml_levels[-1].A, self._coarse_name, coarse_options)
        if check:
            self._check_against_pyamg(levels)
        return Cycle(levels, self._coarse.solve)

    def _check_against_pyamg(self, levels: list[CycleLevel]) -> None:
        """Check that each smoother reproduces the one pyamg set up on the same level.

        Levels up to ``_CHECK_MAX_ROWS`` rows are checked on one random vector (the larger
        levels use the same set-up code), so a change in pyamg's smoother parameters cannot
        go unnoticed: the transpose would no longer be that of pyamg's cycle.
        """
        rng = np.random.default_rng(0)
        for i, (level, ours) in enumerate(zip(self.hierarchy.levels[:-1], levels[:-1],
                                                       strict=True)):
            n = level.A.shape[0]
            if n > _CHECK_MAX_ROWS:
                continue
            field = level.A.dtype
            b = rng.standard_normal(n).astype(field)
            for role, theirs, mine in (("presmoother", level.presmoother, ours.pre),
                                       ("postsmoother", level.postsmoother, ours.post)):
                x0 = rng.standard_normal(n).astype(field)
                expected, got = x0.copy(), x0.copy()
                theirs(level.A, expected, b)
                mine(ours.A, got, b)
                scale = max(np.abs(expected).max(), np.abs(x0).max(), 1.0)
                if not np.abs(expected - got).max() <= 1e-12 * scale:
                    raise RuntimeError(
                        f"AMGPreconditioner: the {role} {mine.label} on level {i} does not "
                        f"reproduce pyamg {pyamg.__version__}'s smoother; its transpose would "
                        "not be exact. Please report this with the pyamg version."
                    )

    def _build_transposed(self) -> Cycle:
        start = time.perf_counter()
        levels = []
        for i, level in enumerate(self._forward.levels):
            if i == 0 and self._exactly_symmetric:
                AT = level.A  # Aᵀ == A entry by entry: no second copy
            else:
                AT = _transpose_of(level.A)
            if level.restrict is None:  # the coarsest level
                levels.append(CycleLevel(AT))
                continue
            PT = _transpose_of(level.interpolate)
            # With R == Pᵀ (Galerkin hierarchies) Rᵀ is P itself.
            RT = level.interpolate if _same_matrix(PT, level.restrict) else _transpose_of(
                level.restrict)
            levels.append(CycleLevel(
                A=AT,
                restrict=PT,
                interpolate=RT,
                pre=level.post.transposed() if level.post is not None else None,
                post=level.pre.transposed() if level.pre is not None else None,
            ))
        cycle = Cycle(levels, self._coarse.solve_transpose, transposed=True)
        self.transpose_setup_seconds = time.perf_counter() - start
        return cycle

    def prepare_transpose(self) -> None:
        """Form the transposed levels now rather than on the first :meth:`apply_transpose`."""
        if self._transposed is None:
            self._transposed = self._build_transposed()

    def _symmetry_of_map(self) -> tuple[bool | None, str]:
        """``(M = Mᵀ?, why not)``: True, False or None (cannot tell), with the reason."""
        if not self.symmetric:
            return False, "A is not symmetric"
        if self.cycle == "F":
            return False, "an F-cycle is not symmetric (its coarse visits are 'F then V')"
        unknown = False
        for i, level in enumerate(self._forward.levels[:-1]):
            if not _is_transpose(level.restrict, level.interpolate):
                return False, f"restriction is not Pᵀ on level {i}"
            if level.pre is None or level.post is None:
                return None, ""
            same = same_steps(level.post, level.pre.transposed())
            if same is False:
                return False, (f"on level {i} the post-smoother {level.post.label} is not the "
                               f"transpose of the pre-smoother {level.pre.label}")
            unknown = unknown or same is None
        coarse = self._coarse.is_symmetric()
        if coarse is False:
            return False, f"the coarse solver {self._coarse_name!r} is not symmetric"
        return (None if unknown or coarse is None else True), ""

    @property
    def dtype(self) -> np.dtype:
        """float64, or complex128 when set up on a complex matrix (then ``apply_transpose``
        applies Mᴴ, the conjugate-transposed cycle)."""
        return self._matrix.dtype

    @property
    def is_symmetric(self) -> bool | None:  # type: ignore[override]
        """Whether the cycle is a symmetric map, ``M = Mᵀ``: symmetric A, a V- or W-cycle,
        ``R = Pᵀ``, each post-smoother the transpose of its pre-smoother and a symmetric
        coarse solve. None when it cannot be told from the set-up, and for a complex matrix
        (conjugate gradients need a Hermitian M, which is not checked)."""
        if self._matrix.dtype.kind == "c":
            return None
        return self._map_symmetry_once()[0]

    @property
    def asymmetry(self) -> str:
        """Why :attr:`is_symmetric` is False (empty otherwise)."""
        return self._map_symmetry_once()[1]

    def _map_symmetry_once(self) -> tuple[bool | None, str]:
        if self._map_symmetry is None:
            self._map_symmetry = self._symmetry_of_map()
        return self._map_symmetry

    # ------------------------------------------------------------------ public interface
    @property
    def accepts_blocks(self) -> bool:
        """True when an (n, k) block is cycled at once, every step a sparse product on the
        block (polynomial smoothing); with Gauss–Seidel or Jacobi sweeps ``apply`` takes
        blocks too, but cycles their columns one by one."""
        return self._forward.takes_blocks

    @property
    def levels(self) -> int:
        """Number of levels of the hierarchy."""
        return len(self.hierarchy.levels)

    @property
    def operator_complexity(self) -> float:
        """Nonzeros on all levels divided by the nonzeros of ``A``."""
        return float(self.hierarchy.operator_complexity())

    @property
    def smoothers(self) -> tuple[tuple[str, str], ...]:
        """``(presmoother, postsmoother)`` description of each level but the coarsest."""
        return tuple((lv.pre.label, lv.post.label) for lv in self._forward.levels[:-1]
                     if lv.pre is not None and lv.post is not None)

    def describe(self) -> str:
        """A one-line summary: method, cycle, levels, complexity, smoothers, coarse solver.

        Examples
        --------
        >>> from pyamg.gallery import poisson
        >>> M = AMGPreconditioner(poisson((20, 20), format="csr"), cycle="W")
        >>> print(M.describe())
        AMG sa W-cycle, 3 levels, operator complexity 1.3..., smoothers
        gauss_seidel(sweep=symmetric)/gauss_seidel(sweep=symmetric), coarse pinv, symmetric A
        """
        smoothers = self.smoothers
        if smoothers:
            pre, post = smoothers[0]
            smoothing = f"smoothers {pre}/{post}"
        else:
            smoothing = "no smoothing (single level)"
        kind = "symmetric" if self.symmetric else "nonsymmetric"
        return (f"AMG {self.method} {self.cycle}-cycle, {self.levels} levels, operator "
                f"complexity {self.operator_complexity:.3f}, {smoothing}, coarse "
                f"{self._coarse_name}, {kind} A")

    def __repr__(self) -> str:
        return f"<AMGPreconditioner: {self.describe()}>"

    def _check(self, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r)
        if r.shape[:1] != (self.shape[0],) or r.ndim > 2:
            raise ValueError(
                f"AMGPreconditioner: expected a vector of length {self.shape[0]} (or an "
                f"({self.shape[0]}, k) block), got shape {r.shape}"
            )
        if np.iscomplexobj(r) and self._matrix.dtype.kind != "c":
            raise ValueError("AMGPreconditioner: complex vectors for a real matrix are not "
                             "supported: set the preconditioner up on a complex matrix")
        return np.ascontiguousarray(r, dtype=self._matrix.dtype)

    def _run(self, engine: Cycle, r: np.ndarray) -> np.ndarray:
        if r.ndim == 1 or engine.takes_blocks:
            # with polynomial smoothing a block is cycled at once, every step a sparse
            # product on the block: 0.055 s against 0.069 s for 16 columns one by one
            # (256², SA, Chebyshev degree 2)
            return engine(r, self.cycle)
        # the compiled sweeps (Gauss–Seidel, Jacobi) take one vector: columns one by one
        # (a block cycle, its columns swept one by one, measured 0.147 s against 0.135 s)
        columns = np.asfortranarray(r)  # one transposing copy, then contiguous columns
        out = np.empty_like(columns)
        for j in range(r.shape[1]):
            out[:, j] = engine(columns[:, j], self.cycle)
        return np.ascontiguousarray(out)

    def apply(self, r: np.ndarray) -> np.ndarray:
        """Return ``M @ r``: one cycle with zero initial guess.

        Parameters
        ----------
        r : ndarray, shape (n,) or (n, k)
            A vector, or k columns (the same map on each; cycled together when the
            smoothers are polynomial, one by one otherwise).

        Returns
        -------
        ndarray
            A new array of the same shape.
        """
        return self._run(self._forward, self._check(r))

    def apply_transpose(self, r: np.ndarray) -> np.ndarray:
        """Return ``Mᵀ @ r``: the transposed cycle (same hierarchy, transposed operators); for
        a complex matrix ``Mᴴ @ r = conj(Mᵀ conj(r))``, the conjugate-transposed cycle.

        Parameters
        ----------
        r : ndarray, shape (n,) or (n, k)

        Returns
        -------
        ndarray
            A new array of the same shape.
        """
        r = self._check(r)
        if self._transposed is None:
            self._transposed = self._build_transposed()
        if r.dtype.kind == "c":  # Mᴴ r = conj(Mᵀ conj(r)): the conjugate-transposed cycle
            return np.conj(self._run(self._transposed, np.conj(r)))
        return self._run(self._transposed, r)


def _like(product: Any, model: Any) -> Any:
    """A Galerkin product in canonical form and in the format of the level it replaces (CSR,
    or BSR of its block size): duplicates are summed in CSR (scipy's BSR ``sum_duplicates``
    took 0.26 s of a 0.30 s refresh at 512²)."""
    csr = product.tocsr()
    csr.sum_duplicates()
    csr.sort_indices()
    if model.format == "bsr":
        return csr.tobsr(blocksize=model.blocksize)
    return csr


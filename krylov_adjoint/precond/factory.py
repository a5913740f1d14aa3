"""Preconditioner specifications: what a user may pass, and how it is set up.

:func:`resolve_preconditioner` turns a specification (a name, a ready preconditioner, a scipy
``LinearOperator``, a pyamg hierarchy or a factory callable) and its options into a
:class:`PreconditionerSource`, refusing what cannot work before any set-up: unknown names and
option keys, matrices passed as if they were M, a ``LinearOperator`` without ``rmatvec``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import CallbackError, InputError
from .base import IdentityPreconditioner, Preconditioner
from .operator import LinearOperatorPreconditioner, defines_rmatvec

__all__ = ["make_preconditioner", "resolve_preconditioner", "PreconditionerSource",
           "PRECONDITIONERS"]

#: Names accepted by :func:`make_preconditioner`, with the class each one builds.
PRECONDITIONERS: dict[str, str] = {
    "jacobi": "krylov_adjoint.precond.jacobi:JacobiPreconditioner",
    "ilu": "krylov_adjoint.precond.ilu:ILUPreconditioner",
    "amg": "krylov_adjoint.precond.amg:AMGPreconditioner",
    "lu": "krylov_adjoint.precond.lu:LUPreconditioner",
}

_ACCEPTED = ("'auto', 'amg', 'ilu', 'jacobi', 'lu', 'none' (or None), a ready preconditioner "
             "(shape, apply, apply_transpose), a scipy LinearOperator with matvec and rmatvec, a "
             "pyamg MultilevelSolver, or a callable A -> preconditioner")


@dataclass(frozen=True, eq=False)
class PreconditionerSource:
    """Where a solver's preconditioner comes from: a ready one, or a recipe to set up.

    Made by :func:`resolve_preconditioner`, which has validated it.

    Attributes
    ----------
    name : str
        For reports: ``"amg"``, ``"ilu"``, ``"jacobi"``, ``"none"``, ``"LinearOperator"``,
        ``"MultilevelSolver"``, the class name of a ready preconditioner or the name of a
        factory callable.
    fixed : Preconditioner or None
        A ready preconditioner, used as is and never rebuilt; None when :meth:`build` sets
        one up from an assembled matrix.
    kind : str, callable or None
        What :meth:`build` sets up: a name of :data:`PRECONDITIONERS` or a factory callable
        ``A, **options -> Preconditioner``; None for a fixed preconditioner.
    options : mapping
        Keyword arguments of the kind's constructor or of the factory (checked).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> source = resolve_preconditioner("jacobi", None, n=2, has_assembled=True)
    >>> source.name, source.fixed
    ('jacobi', None)
    >>> source.build(sp.diags([2.0, 4.0])).apply_transpose([1.0, 1.0])
    array([0.5 , 0.25])
    """

    name: str
    fixed: Preconditioner | None = None
    kind: str | Callable[..., Preconditioner] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def refresh_per_theta(self) -> bool:
        """True for a kind that is set up again for every new θ by default (a factorisation:
        ``refresh_per_theta`` on its class)."""
        if not isinstance(self.kind, str):
            return False
        module_name, class_name = PRECONDITIONERS[self.kind].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return bool(getattr(cls, "refresh_per_theta", False))

    def build(self, A: Any, *, near_nullspace: Any = None) -> Preconditioner:
        """Set up the preconditioner on the assembled matrix ``A`` (scipy.sparse, N × N).

        ``near_nullspace`` (N × k) is passed to AMG (smoothed aggregation's ``B``) when the
        kind is ``"amg"``; it is ignored by the other kinds.

        Raises
        ------
        ValueError
            For a fixed preconditioner: there is nothing to set up.
        CallbackError
            When a factory callable returns something other than a preconditioner of
            shape ``A.shape`` (with ``apply`` and ``apply_transpose``).
        """
        if self.fixed is not None or self.kind is None:
            raise ValueError(f"preconditioner {self.name!r} is a ready preconditioner, used as "
                             "is: there is nothing to set up")
        if isinstance(self.kind, str):
            options = dict(self.options)
            if self.kind == "amg" and near_nullspace is not None:
                options["near_nullspace"] = near_nullspace
            return _class_of(self.kind)(A, **options)
        built = self.kind(A, **self.options)
        if not isinstance(built, Preconditioner):
            raise CallbackError(self.name, f"the preconditioner factory returned "
                                           f"{type(built).__name__}, expected an object with "
                                           "shape, apply and apply_transpose")
        if tuple(built.shape) != tuple(A.shape):
            raise CallbackError(self.name, f"the preconditioner factory returned shape "
                                           f"{built.shape}, expected {A.shape}")
        return built


def resolve_preconditioner(spec: Any, options: Mapping[str, Any] | None, *, n: int,
                           has_assembled: bool) -> PreconditionerSource:
    """Check a preconditioner specification and its options; say how to get M.

    Parameters
    ----------
    spec : str, object, LinearOperator, MultilevelSolver, callable or None
        - ``"auto"``: ``"amg"`` when an assembled matrix is available, else ``"none"``;
        - ``"none"`` or None: no preconditioning (a fixed identity);
        - ``"jacobi"``, ``"ilu"``, ``"amg"``: set up from the assembled matrix;
        - a ready preconditioner (``shape``, ``apply``, ``apply_transpose``): used as is;
        - a scipy ``LinearOperator`` with ``matvec`` and ``rmatvec`` (its ``rmatvec`` is Mᵀ):
          used as is (:class:`~krylov_adjoint.precond.LinearOperatorPreconditioner`);
        - a pyamg ``MultilevelSolver``: used as is with the library's exact transposed
          cycle (:meth:`~krylov_adjoint.precond.AMGPreconditioner.from_hierarchy`; its
          smoothers must be pyamg's defaults, else wrap it yourself with the right ones);
        - any other callable: a factory ``spec(A, **options) -> Preconditioner`` set up
          from the assembled matrix.
    options : mapping or None
        Keyword arguments of a named kind's constructor or of a factory; refused for a
        ready preconditioner.
    n : int
        The number of unknowns: a ready preconditioner must have shape (n, n).
    has_assembled : bool
        Whether the operator can be assembled (``assemble=...``), as the named kinds and
        factories need.

    Returns
    -------
    PreconditionerSource

    Raises
    ------
    InputError
        Naming ``preconditioner`` or ``preconditioner_options``: an unknown name, a
        matrix or array given as M, a LinearOperator without ``rmatvec``, a wrong shape, a
        kind that needs an assembled matrix when there is none, unknown option keys
        (listing the accepted ones), or options with a ready preconditioner.
    ValueError
        From :meth:`AMGPreconditioner.check_options
        <krylov_adjoint.precond.AMGPreconditioner.check_options>`, for AMG options.

    Examples
    --------
    >>> resolve_preconditioner("auto", None, n=4, has_assembled=False).name
    'none'
    >>> resolve_preconditioner("ilu", {"drop_tol": 1e-3}, n=4, has_assembled=True).options
    {'drop_tol': 0.001}
    >>> resolve_preconditioner("ilu", {"droptol": 1e-3}, n=4, has_assembled=True)
    Traceback (most recent call last):
    ...
    krylov_adjoint.errors.InputError: preconditioner_options: unknown option 'droptol' for \
preconditioner='ilu'; accepted: drop_tol, fill_factor
    """
    options = _checked_options(options)
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        return _named(spec, options, n, has_assembled)
    if sp.issparse(spec) or isinstance(spec, np.ndarray):
        raise InputError("preconditioner", "an assembled matrix is not a preconditioner: pass "
                         "preconditioner='amg' (or 'ilu', 'jacobi') with assemble=... on the "
                         "operator, or M ≈ A⁻¹ as an object with apply/apply_transpose or a "
                         "LinearOperator with matvec and rmatvec")
    if _is_multilevel_solver(spec):
        _refuse_options(options, "MultilevelSolver")
        from .amg import AMGPreconditioner

        return _fixed("MultilevelSolver", AMGPreconditioner.from_hierarchy(spec), n)
    if isinstance(spec, Preconditioner) and not isinstance(spec, type):
        _refuse_options(options, type(spec).__name__)
        return _fixed(type(spec).__name__, spec, n)
    if isinstance(spec, spla.LinearOperator):  # before callables: a LinearOperator is one
        _refuse_options(options, "LinearOperator")
        _check_shape(spec.shape, n)
        if not defines_rmatvec(spec):
            raise InputError("preconditioner", "this LinearOperator was made without rmatvec, "
                             "but the adjoint solve needs Mᵀ: pass rmatvec=... to "
                             "LinearOperator (rmatvec=matvec if M is symmetric), or an object "
                             "with apply and apply_transpose")
        return _fixed("LinearOperator", LinearOperatorPreconditioner(spec), n)
    if hasattr(spec, "apply") and not isinstance(spec, type):
        missing = [a for a in ("shape", "apply_transpose") if not hasattr(spec, a)]
        raise InputError("preconditioner", f"{type(spec).__name__} has apply but no "
                         f"{' or '.join(missing)}: a preconditioner needs shape, apply (M @ r) "
                         "and apply_transpose (Mᵀ @ r, for the adjoint solve)")
    if callable(spec):
        name = getattr(spec, "__name__", None) or type(spec).__name__
        _require_assembled(name, has_assembled)
        _check_factory_options(spec, name, options)
        return PreconditionerSource(name, kind=spec, options=options)
    raise InputError("preconditioner", f"expected {_ACCEPTED}; got {type(spec).__name__}")


def make_preconditioner(spec: str | Callable[..., Preconditioner] | Any, A: Any,
                        **options: Any) -> Preconditioner:
    """Set up a preconditioner of the given kind on the assembled matrix ``A``.

    Parameters
    ----------
    spec : str, callable or preconditioner
        ``"jacobi"``, ``"ilu"``, ``"amg"``, ``"none"``, ``"auto"``, a callable
        ``A -> Preconditioner``, or any other specification accepted by
        :func:`resolve_preconditioner` (a ready one is returned as is).
    A : scipy.sparse matrix
    **options
        Passed to the preconditioner's constructor (e.g. ``drop_tol`` for ILU, ``method`` and
        ``cycle`` for AMG); unknown names are refused.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> M = make_preconditioner("jacobi", sp.diags([2.0, 4.0]))
    >>> type(M).__name__
    'JacobiPreconditioner'
    """
    source = resolve_preconditioner(spec, options, n=A.shape[0], has_assembled=True)
    return source.fixed if source.fixed is not None else source.build(A)


# -- helpers -----------------------------------------------------------------------------------
def _checked_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise InputError("preconditioner_options", "expected a dict of keyword arguments, got "
                         f"{type(options).__name__}")
    return dict(options)


def _named(spec: str, options: dict[str, Any], n: int,
           has_assembled: bool) -> PreconditionerSource:
    if spec == "auto":
        spec = "amg" if has_assembled else "none"
        if spec == "none" and options:
            raise InputError("preconditioner_options", "options are given, but "
                             "preconditioner='auto' means no preconditioner here (the operator "
                             "has no assemble callback): pass assemble=... to build AMG, or "
                             "drop the options")
    if spec == "none":
        _refuse_options(options, "none")
        return PreconditionerSource("none", fixed=IdentityPreconditioner(n))
    if spec not in PRECONDITIONERS:
        raise InputError("preconditioner", f"unknown preconditioner {spec!r}: expected "
                         f"{_ACCEPTED}")
    _require_assembled(spec, has_assembled)
    cls = _class_of(spec)
    check = getattr(cls, "check_options", None)
    if check is not None:
        check(options)
    else:
        _refuse_unknown(options, _keyword_names(cls, skip_first=True), f"preconditioner={spec!r}")
    return PreconditionerSource(spec, kind=spec, options=options)


def _class_of(kind: str) -> type:
    module_name, class_name = PRECONDITIONERS[kind].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _fixed(name: str, M: Any, n: int) -> PreconditionerSource:
    _check_shape(M.shape, n)
    return PreconditionerSource(name, fixed=M)


def _check_shape(shape: Any, n: int) -> None:
    if tuple(shape) != (n, n):
        raise InputError("preconditioner", f"expected shape ({n}, {n}), got {tuple(shape)}")


def _refuse_options(options: dict[str, Any], name: str) -> None:
    if options:
        raise InputError("preconditioner_options", f"{sorted(options)} given, but the "
                         f"preconditioner ({name}) is used as is, not set up by the solver: "
                         "pass the options to its constructor, or drop them")


def _require_assembled(name: str, has_assembled: bool) -> None:
    if not has_assembled:
        raise InputError("preconditioner", f"{name!r} is set up from an assembled matrix, but "
                         "the operator has no assemble callback: pass assemble=... to "
                         "ParametricOperator, or a ready preconditioner (an object with apply "
                         "and apply_transpose, or a LinearOperator with rmatvec)")


def _keyword_names(function: Any, *, skip_first: bool) -> list[str] | None:
    """The names ``function`` accepts as keywords (after its first parameter if
    ``skip_first``), or None when it takes ``**kwargs`` (anything goes)."""
    parameters = list(inspect.signature(function).parameters.values())
    if skip_first and parameters and parameters[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        parameters = parameters[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _refuse_unknown(options: dict[str, Any], accepted: list[str] | None, what: str) -> None:
    if accepted is None:
        return
    unknown = [name for name in options if name not in accepted]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise InputError("preconditioner_options", f"unknown option{plural} "
                         f"{', '.join(repr(u) for u in unknown)} for {what}; accepted: "
                         f"{', '.join(accepted) if accepted else 'none'}")


def _check_factory_options(factory: Any, name: str, options: dict[str, Any]) -> None:
    """Refuse option keys a Python factory (function, method or class) does not take; the
    signature of other callables is not inspected."""
    python_callable = (inspect.isfunction(factory) or inspect.ismethod(factory)
                       or (inspect.isclass(factory)
                           and inspect.isfunction(getattr(factory, "__init__", None))))
    if python_callable:
        _refuse_unknown(options, _keyword_names(factory, skip_first=True),
                        f"the preconditioner factory {name}")


def _is_multilevel_solver(spec: Any) -> bool:
    """Whether ``spec`` is a pyamg MultilevelSolver (pyamg is not imported for this)."""
    multilevel = sys.modules.get("pyamg.multilevel")
    return multilevel is not None and isinstance(spec, multilevel.MultilevelSolver)

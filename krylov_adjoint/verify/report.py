"""The combined report of :func:`~krylov_adjoint.verify.check_problem`: one row per check."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckResult", "VerificationReport"]


@dataclass(frozen=True, eq=False)
class CheckResult:
    """One verified callback: its name, error, tolerance and verdict.

    Attributes
    ----------
    name : str
        The callback under test (``"operator.rmatvec"``, ``"operator.vjp"``, ``"rhs.vjp"``,
        ``"objective.grad_x"``, ``"preconditioner.apply_transpose"``, ...) or
        ``"gradient.taylor"`` for the Taylor test of the whole gradient. When a check
        stopped on an error raised by another callback, that callback is named.
    passed : bool
        True when ``error <= tolerance`` (always True for a skipped check).
    error : float
        The normalised error of the check (NaN when it could not be computed).
    tolerance : float
        The threshold the error is compared with.
    detail : str
        What was compared with what, or why the check stopped or was skipped.
    skipped : bool
        True when there was nothing to check (e.g. b does not depend on θ).
    inconclusive : bool
        The check neither confirmed nor contradicted the callback (a Taylor test where J
        does not change measurably and the gradient predicts no change); ``passed`` is True.
    report : object or None
        The full report of the check (:class:`DotTestReport`, :class:`DerivativeReport`,
        :class:`TaylorReport`), None when the check raised.

    Examples
    --------
    >>> CheckResult("rhs.vjp", True, 1e-17, 1e-8).status
    'pass'
    """

    name: str
    passed: bool
    error: float
    tolerance: float
    detail: str = ""
    skipped: bool = False
    report: Any = None
    inconclusive: bool = False

    @property
    def status(self) -> str:
        """``"pass"``, ``"FAIL"``, ``"skipped"`` or ``"inconclusive"``."""
        if self.skipped:
            return "skipped"
        if self.inconclusive:
            return "inconclusive"
        return "pass" if self.passed else "FAIL"


@dataclass(frozen=True, eq=False)
class VerificationReport:
    """The result of every check run on a problem at one θ.

    Attributes
    ----------
    checks : tuple of CheckResult
        In the order they were run.
    passed : bool
        True when no check failed.
    failures : tuple of str
        The names of the failing callbacks, without repetition, in order.

    Examples
    --------
    >>> report = VerificationReport((CheckResult("operator.rmatvec", True, 1e-17, 1e-12),
    ...                              CheckResult("operator.vjp", False, 0.3, 1e-8)))
    >>> report.passed, report.failures
    (False, ('operator.vjp',))
    >>> report["operator.vjp"].error
    0.3
    """

    checks: tuple[CheckResult, ...]
    passed: bool = field(init=False)
    failures: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        checks = tuple(self.checks)
        failed = [c.name for c in checks if not c.passed]
        object.__setattr__(self, "checks", checks)
        object.__setattr__(self, "passed", not failed)
        object.__setattr__(self, "failures", tuple(dict.fromkeys(failed)))

    @property
    def names(self) -> tuple[str, ...]:
        """The names of all checks, in order."""
        return tuple(c.name for c in self.checks)

    def __getitem__(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; the checks are {', '.join(self.names)}")

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def summary(self) -> str:
        """A table with one line per check, then the list of failing callbacks."""
        statuses = ("pass", "FAIL", "skipped", "inconclusive")
        counts = {s: sum(c.status == s for c in self.checks) for s in statuses}
        head = ("Verification PASSED" if self.passed else "Verification FAILED") + (
            f": {counts['pass']} passed, {counts['FAIL']} failed, {counts['skipped']} skipped")
        if counts["inconclusive"]:
            head += f", {counts['inconclusive']} inconclusive"
        width = max([len("check"), *(len(c.name) for c in self.checks)])
        lines = [head, f"{'check':<{width}}  {'error':>9}  {'tolerance':>9}  status   detail"]
        for c in self.checks:
            lines.append(f"{c.name:<{width}}  {format_number(c.error):>9}  "
                         f"{format_number(c.tolerance):>9}  {c.status:<7}  {c.detail}")
        if self.failures:
            lines.append("failing: " + ", ".join(self.failures))
        return "\n".join(lines)


def format_number(value: float) -> str:
    """Short scientific notation; ``-`` for NaN."""
    return "-" if value is None or math.isnan(value) else f"{value:.2e}"

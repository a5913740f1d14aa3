"""Directional-derivative comparisons: a claimed derivative against a reference one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .report import CheckResult, format_number

__all__ = ["DerivativeReport", "FD_RTOL", "EXACT_RTOL", "FD_RELATIVE_STEP"]

#: Tolerance when the reference is another exact derivative (e.g. a VJP against a JVP):
#: only round-off separates them.
EXACT_RTOL = 1e-8
#: Tolerance when the reference is a central finite difference: its truncation error is
#: about ``h²`` times the third derivative, with ``h`` of order ``eps^(1/3)`` (relative).
FD_RTOL = 1e-6
#: Default central-difference step, relative to the size of the point (``≈ eps^(1/3)``).
FD_RELATIVE_STEP = 6e-6
#: Round-off of ``f(t)`` is taken as ``NOISE_FACTOR · eps · magnitude``.
NOISE_FACTOR = 64.0


@dataclass(frozen=True, eq=False)
class DerivativeReport:
    """Outcome of comparing a claimed directional derivative with a reference one.

    Attributes
    ----------
    name : str
        The callback under test, e.g. ``"operator.vjp"``.
    reference : str
        What it was compared with, e.g. ``"operator.jvp"`` or ``"central difference"``.
    claimed, expected : ndarray
        Per trial, the directional derivative from the callback under test and from the
        reference.
    errors : ndarray
        Per trial, the normalised error (see ``error``).
    rtol : float
        The tolerance.
    step : float or None
        The finite-difference step of the last trial (None for an exact reference).
    skipped : bool
        True when there was nothing to check (e.g. the operator does not depend on θ).
    note : str
        Why the check was skipped, or other remarks.
    error : float
        The worst error: ``max(|claimed − expected| − noise, 0) / scale``, where ``scale``
        bounds ``|claimed| + |expected|`` (by Cauchy–Schwarz, e.g. ``‖vjp‖‖dθ‖ + ‖λ‖‖jvp‖``)
        and ``noise`` is the round-off level of a finite difference (0 for an exact
        reference), so that a derivative that is zero to round-off is not failed.
    passed : bool
        ``error <= rtol``.
    """

    name: str
    reference: str
    claimed: np.ndarray
    expected: np.ndarray
    errors: np.ndarray
    rtol: float
    step: float | None = None
    skipped: bool = False
    note: str = ""
    error: float = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        for name in ("claimed", "expected", "errors"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        error = float(self.errors.max()) if self.errors.size else 0.0
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "passed", bool(error <= self.rtol))

    @classmethod
    def skip(cls, name: str, note: str) -> DerivativeReport:
        """A report for a check with nothing to check."""
        empty = np.zeros(0)
        return cls(name, "-", empty, empty, empty, np.inf, skipped=True, note=note)

    def summary(self) -> str:
        """One line: verdict, worst error, tolerance, reference."""
        if self.skipped:
            return f"{self.name}: skipped ({self.note})"
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"{self.name}: {verdict} against {self.reference}, worst relative error "
                f"{format_number(self.error)} (tolerance {format_number(self.rtol)}, "
                f"{self.errors.size} trials)")

    def as_check(self) -> CheckResult:
        """This report as a row of a :class:`VerificationReport`."""
        if self.skipped:
            return CheckResult(self.name, True, np.nan, np.nan, self.note, skipped=True,
                               report=self)
        detail = f"against {self.reference}, {self.errors.size} trials"
        if self.note:
            detail += f"; {self.note}"
        return CheckResult(self.name, self.passed, self.error, self.rtol, detail, report=self)


def central_difference(f: Callable[[float], tuple[float, float]], h: float
                       ) -> tuple[float, float]:
    """``(f(h) − f(−h)) / 2h`` and its round-off level.

    ``f(t)`` returns ``(value, magnitude)`` where ``magnitude`` bounds the size of the terms
    summed to get the value (e.g. ``‖λ‖‖A x‖`` for ``λᵀA x``), so that the round-off of
    the difference is about ``eps · magnitude / h``.
    """
    plus, size_plus = f(h)
    minus, size_minus = f(-h)
    estimate = (plus - minus) / (2.0 * h)
    noise = NOISE_FACTOR * np.finfo(float).eps * max(size_plus, size_minus) / h
    return float(estimate), float(noise)


def normalised_error(claimed: float, expected: float, scale: float, noise: float = 0.0
                     ) -> float:
    """``max(|claimed − expected| − noise, 0) / scale``; infinite when not finite."""
    gap = abs(claimed - expected)
    if not np.isfinite(gap):
        return np.inf
    gap -= noise
    if gap <= 0.0:
        return 0.0
    return gap / scale if scale > 0 else np.inf

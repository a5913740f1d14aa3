"""The verdict of a Taylor test from its remainders, for any expected order.

Shared by the gradient's Taylor tests (:mod:`.taylor`) and the Hessian's (:mod:`.hessian`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .taylor import TaylorReport

#: Remainders below ``ROUNDOFF_FACTOR · eps · magnitude`` are round-off.
ROUNDOFF_FACTOR = 1e3


def analyse_remainders(steps: np.ndarray, first: np.ndarray, remainders: np.ndarray,
                       magnitude: float, noise_floor: float, rate_range: tuple[float, float],
                       min_rates: int, *, values: np.ndarray, value: float, slope: float,
                       order: int = 2, curvature: float = float("nan"),
                       name: str = "gradient.taylor", predictor: str = "the gradient",
                       quantity: str = "J") -> TaylorReport:
    """Rates, the noise floor, the usable rates and the verdict of any Taylor test.

    ``first`` are the remainders without any derivative (rate 1), ``remainders`` those with
    the derivatives under test (rate ``order``); ``magnitude`` is the size of the values
    whose differences they are (round-off level ``ROUNDOFF_FACTOR·eps·magnitude``).
    ``predictor`` and ``quantity`` name the derivative under test and the function in the
    notes ("the gradient", "J").
    """
    lo, hi = (float(r) for r in rate_range)
    floor = max(noise_floor, ROUNDOFF_FACTOR * np.finfo(float).eps * magnitude)
    rates, first_rates = _rates(remainders, steps), _rates(first, steps)

    above = remainders > floor
    measured = above[:-1] & above[1:]
    in_range = (rates >= lo) & (rates <= hi)
    usable = measured.copy()
    first_good = np.flatnonzero(measured & in_range)
    if first_good.size:  # rates before the first in-range one are pre-asymptotic
        usable[: first_good[0]] = False
    wrong = usable & ~in_range
    count = int(usable.sum())
    notes = []
    inconclusive = False
    dropped = int((measured & ~usable).sum())
    if dropped:
        notes.append(f"{dropped} leading rate(s) at the largest steps treated as "
                     "pre-asymptotic")
    if wrong.any():
        passed = False
    elif count >= int(min_rates):
        passed = True
    elif not above.any():
        passed = bool(first.max() > floor)
        if passed:
            shape = "linear" if order == 2 else f"a polynomial of degree {order - 1}"
            notes.append(f"every remainder is at noise level while {quantity} changes: "
                         f"{quantity} is {shape} along dθ and {predictor} predicts it")
        else:  # no change, and the derivatives predict none (else remainders were above)
            passed = inconclusive = True
            notes.append(f"inconclusive: {quantity} does not change measurably along dθ, "
                         f"and {predictor} predicts no change; try another θ or direction")
    elif count and not above[-1]:
        passed = True
        notes.append(f"the remainders reach the noise floor after {count} usable rate(s): "
                     f"{predictor} predicts {quantity} to within the noise at the smaller "
                     "steps")
    else:
        passed = False
        notes.append(f"inconclusive: {count} usable rate(s), {int(min_rates)} needed; use "
                     f"larger steps or evaluate {quantity} more accurately")
    note = "; ".join(notes)
    finite = rates[usable]
    from .taylor import TaylorReport

    return TaylorReport(
        steps=steps, values=values, value=value, slope=slope, first_order_remainders=first,
        first_order_rates=first_rates, remainders=remainders, rates=rates, usable=usable,
        noise_floor=floor, rate_range=(lo, hi), min_rates=int(min_rates),
        min_rate=float(finite.min()) if finite.size else float("nan"),
        mean_rate=float(finite.mean()) if finite.size else float("nan"),
        passed=bool(passed), note=note, inconclusive=inconclusive, order=int(order),
        curvature=float(curvature), name=name)


def _rates(remainders: np.ndarray, steps: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(remainders[:-1] / remainders[1:]) / np.log(steps[:-1] / steps[1:])

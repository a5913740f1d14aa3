"""Cheap checks of the user's callbacks, run by the engine: a gradient is right or refused.

- :func:`probe_transpose`: the declared transpose (or symmetry) of A(θ), at every new θ;
- :func:`check_derivatives`: each derivative callback against a difference quotient of its
  term of the Lagrangian, at the first gradient and at the reuse rule's set-ups.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._transpose import transpose_mismatch
from ..errors import CallbackError, NonFiniteError
from .backend import Backend

__all__ = ["probe_transpose", "check_derivatives", "check_nullspace", "TRANSPOSE_PROBE_RTOL",
           "DIFFERENCE_STEP", "DERIVATIVE_RTOL", "NOISE_FACTOR"]

#: A declared transpose (or symmetry) is refused when the randomised probe
#: ``|uᵀ(A v) − vᵀ(Aᵀ u)| / (‖u‖‖A v‖ + ‖v‖‖Aᵀ u‖)`` exceeds this (round-off is ~1e-16·√N).
TRANSPOSE_PROBE_RTOL = 1e-10
#: Relative step of the difference quotients that check the derivative callbacks.
DIFFERENCE_STEP = 1e-4
#: A derivative callback is refused when it misses its difference quotient by more than this
#: share (the truncation error is about DIFFERENCE_STEP² = 1e-8 relative; round-off is
#: allowed for separately).
DERIVATIVE_RTOL = 1e-4
#: Round-off allowance of a difference quotient, in units of eps·|term|/step: both
#: evaluations share x and λ, so only the θ-dependent part of each term differs.
NOISE_FACTOR = 16.0


def probe_transpose(backend: Backend, bound: Any, pair: tuple[Any, Any]) -> None:
    """Refuse a declared transpose that is not one: ``uᵀ(A v)`` against ``vᵀ(Aᵀ u)``.

    Two operator products and four inner products (the engine draws the random pair once
    and keeps it: the operator changes with θ, the test stays as strong): about 1 % of a
    gradient at 10⁶ unknowns with a kept preconditioner. A symmetric declaration
    (``matvec`` standing in for ``rmatvec``) is checked the same way.
    """
    u, v = pair
    Av, ATu = backend.apply(bound, v, transpose=False), backend.apply(bound, u, transpose=True)
    for name, product in (("operator.matvec", Av), (bound.operator.rmatvec_name, ATu)):
        if not backend.is_finite(product):
            raise NonFiniteError(name, "returned NaN or Inf from a finite random vector")
    error = transpose_mismatch(backend.dot(Av, u), backend.dot(v, ATu),
                               *(backend.dot(w, w) ** 0.5 for w in (Av, u, v, ATu)))
    if error > TRANSPOSE_PROBE_RTOL:
        op = bound.operator
        if op.symmetric_rmatvec:
            why = (f"A(θ) is not symmetric at this θ although structure="
                   f"{op.structure.value!r} was declared (randomised test uᵀAv against "
                   f"vᵀAu: relative mismatch {error:.2e}): declare structure='general' "
                   "and pass rmatvec=...")
        else:
            why = (f"is not the transpose of operator.matvec at this θ (randomised test "
                   f"uᵀAv against vᵀAᵀu: relative mismatch {error:.2e})")
        raise CallbackError(op.rmatvec_name, why)


def check_nullspace(backend: Backend, bound: Any) -> None:
    """Refuse declared nullspace vectors that A(θ) (or A(θ)ᵀ) does not annihilate.

    One product per declared vector and one random product for the scale:
    ``‖A z‖ ≤ null_rtol·‖A‖·‖z‖`` with ‖A‖ estimated by ``‖A u‖/‖u‖`` (an underestimate, so
    the test errs on the strict side; round-off is about 1e-16·‖A‖·‖z‖).
    """
    declared = bound.operator.nullspace
    for name, column, ratio in backend.nullspace_residuals(bound):
        if ratio > declared.null_rtol:
            transposed = "transpose" in name
            which, product = ("A(θ)ᵀ", "Aᵀ") if transposed else ("A(θ)", "A")
            raise CallbackError(name, (
                f"vector {column} is not in the nullspace of {which}: ‖{product} v‖ / "
                f"(‖A‖·‖v‖) = {ratio:.2e} > null_rtol = {declared.null_rtol:.0e}; declare "
                f"vectors that {which} maps to zero (for a nonsymmetric A, pass "
                "Nullspace(..., transpose=...) with the nullspace of Aᵀ)"))


def check_derivatives(backend: Backend, bound: Any, x: Any, lam: Any, *, seed: int) -> None:
    """Refuse a derivative callback that disagrees with a difference quotient.

    ``dJ/dθ·dθ`` is the derivative of the Lagrangian ``J(x, θ) − λᵀ(A(θ)x − b(θ))`` at
    fixed x and λ, so each of its three terms (∂J/∂θ·dθ, λᵀ(∂A/∂θ·dθ)x, λᵀ(∂b/∂θ)dθ)
    is compared with a central difference of its own term along one random dθ: two
    more evaluations of A x, b and J, no solve (1.4–2.6 % of a gradient with its set-up at
    10⁶ unknowns).
    """
    theta = backend.theta_of(bound)
    rng = np.random.default_rng(seed)
    rms = (backend.global_sum(float(theta @ theta))
           / max(backend.global_sum(float(theta.size)), 1.0)) ** 0.5
    direction = rng.standard_normal(theta.size) * (np.abs(theta) + (rms or 1.0))
    analytic = backend.derivative_terms(bound, x, lam, direction)
    values = []
    for sign in (1.0, -1.0):
        shifted, _ = backend.bind(theta + sign * DIFFERENCE_STEP * direction)
        values.append(backend.lagrangian_terms(shifted, x, lam))
    backend.restore(bound)
    names = ("objective.grad_theta", "operator.vjp", "rhs.vjp")
    for k, name in enumerate(names):
        quotient = (values[0][k] - values[1][k]) / (2 * DIFFERENCE_STEP)
        magnitude = abs(values[0][k]) + (values[0][3] if k else 0.0)
        noise = NOISE_FACTOR * np.finfo(float).eps * magnitude / DIFFERENCE_STEP
        gap = abs(quotient - analytic[k])
        if gap > DERIVATIVE_RTOL * (abs(quotient) + abs(analytic[k])) + noise:
            raise CallbackError(name, (
                f"disagrees with a difference quotient along a random direction dθ: "
                f"{name}·dθ = {analytic[k]:.6e}, quotient {quotient:.6e}; check its sign "
                "and scale (krylov_adjoint.verify.check_problem tests every callback). "
                "For a problem that is not differentiable here, pass check_gradient=False"))

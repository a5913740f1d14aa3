"""Random small problems with one defect injected: a gradient is right or refused, never wrong.

For every generated problem ``gradient()`` must either raise a library error naming the
defective callback, or return the dense numpy reference gradient to 1e-6; and
``check_problem`` must name the defective callback. The defect classes are those a user can
actually make: a wrong transpose, a VJP with a wrong sign or scale, a symmetry declared for a
nonsymmetric operator, NaN at some iteration, a wrong output shape, a read-only output, a
preconditioner that modifies its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import krylov_adjoint as ka
from krylov_adjoint.verify import check_problem

#: Each defect class, and the callback an error must name (None: the gradient must be right).
DEFECTS = {
    "none": None,
    "wrong_transpose": "operator.rmatvec",
    "vjp_sign": "operator.vjp",
    "vjp_scale": "operator.vjp",
    "rhs_vjp_sign": "rhs.vjp",
    "grad_theta_scale": "objective.grad_theta",
    "declared_symmetric": "operator.matvec",
    "nan_at_iteration": "operator.matvec",
    "wrong_shape": "operator.matvec",
    "readonly_output": None,
    "mutating_preconditioner": "preconditioner.apply",
}

#: How many problems each defect class is tried on (gradient; check_problem).
GRADIENT_EXAMPLES = 150
CHECK_EXAMPLES = 20


@dataclass
class Case:
    """A random affine problem A(θ) = A0 + Σ θ_k B_k, b(θ) = b0 + C θ, J = ½‖x − d‖² + ½α‖θ‖²."""

    A0: np.ndarray
    B: np.ndarray  # (P, N, N)
    b0: np.ndarray
    C: np.ndarray  # (N, P)
    d: np.ndarray
    alpha: float
    theta: np.ndarray

    @property
    def n(self) -> int:
        return self.A0.shape[0]

    def A(self, theta: np.ndarray) -> np.ndarray:
        return self.A0 + np.tensordot(theta, self.B, axes=1)

    def reference(self) -> np.ndarray:
        A = self.A(self.theta)
        x = np.linalg.solve(A, self.b0 + self.C @ self.theta)
        lam = np.linalg.solve(A.T, x - self.d)
        return self.alpha * self.theta - np.einsum("i,kij,j->k", lam, self.B, x) + self.C.T @ lam


@st.composite
def cases(draw: Any) -> Case:
    n = draw(st.integers(4, 10))
    p = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    A0 = rng.standard_normal((n, n)) * (rng.random((n, n)) < 0.4)
    A0 += np.diag(np.abs(A0).sum(axis=1) + 1.0 + rng.random(n))  # diagonally dominant
    B = 0.1 * rng.standard_normal((p, n, n)) * (rng.random((p, n, n)) < 0.3)
    return Case(A0=A0, B=B, b0=rng.standard_normal(n), C=rng.standard_normal((n, p)),
                d=rng.standard_normal(n), alpha=float(rng.uniform(0.1, 1.0)),
                theta=rng.uniform(-1.0, 1.0, p))


class MutatingJacobi:
    """A Jacobi preconditioner that scales its input in place (the defect)."""

    def __init__(self, diagonal: np.ndarray) -> None:
        self.inverse = 1.0 / diagonal
        self.shape = (diagonal.size, diagonal.size)

    def apply(self, r: np.ndarray) -> np.ndarray:
        r *= self.inverse
        return r

    apply_transpose = apply


def build(case: Case, defect: str) -> tuple[ka.AdjointProblem, Any]:
    """The problem with ``defect`` injected, and the preconditioner to use."""
    n, p = case.n, case.theta.size
    calls = {"matvec": 0}
    sign = {"vjp": 1.0, "rhs": 1.0, "direct": 1.0}
    if defect == "vjp_sign":
        sign["vjp"] = -1.0
    elif defect == "vjp_scale":
        sign["vjp"] = 2.0
    elif defect == "rhs_vjp_sign":
        sign["rhs"] = -1.0
    elif defect == "grad_theta_scale":
        sign["direct"] = 0.5

    def matvec(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        calls["matvec"] += 1
        y = case.A(theta) @ x
        if defect == "nan_at_iteration" and calls["matvec"] > 3:
            y[0] = np.nan
        if defect == "wrong_shape":
            return y[:-1]
        if defect == "readonly_output":
            y.flags.writeable = False
        return y

    def rmatvec(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        A = case.A(theta)
        return (A if defect == "wrong_transpose" else A.T) @ y

    def vjp(theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return sign["vjp"] * np.einsum("i,kij,j->k", lam, case.B, x)

    def jvp(theta: np.ndarray, x: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return np.tensordot(dtheta, case.B, axes=1) @ x

    declared = defect == "declared_symmetric"
    op = ka.ParametricOperator(matvec, n=n, rmatvec=None if declared else rmatvec, vjp=vjp,
                               jvp=jvp, structure="symmetric" if declared else "general",
                               assemble=lambda theta: sp.csr_matrix(case.A(theta)))
    rhs = ka.RightHandSide(lambda theta: case.b0 + case.C @ theta,
                           vjp=lambda theta, lam: sign["rhs"] * case.C.T @ lam,
                           jvp=lambda theta, dtheta: case.C @ dtheta)
    objective = ka.Objective(
        J=lambda theta, x: 0.5 * float((x - case.d) @ (x - case.d))
        + 0.5 * case.alpha * float(theta @ theta),
        dJ_dx=lambda theta, x: x - case.d,
        dJ_dtheta=lambda theta, x: sign["direct"] * case.alpha * theta)
    problem = ka.AdjointProblem(op, rhs, objective, n_params=p)
    preconditioner: Any = "jacobi"
    if defect == "mutating_preconditioner":
        preconditioner = MutatingJacobi(np.diag(case.A(case.theta)).copy())
    return problem, preconditioner


def names(exc: BaseException, culprit: str) -> bool:
    """True when ``exc`` is a library error naming ``culprit``."""
    return isinstance(exc, ka.CallbackError) and exc.callback.startswith(culprit)


@pytest.mark.parametrize("defect", DEFECTS)
@settings(max_examples=GRADIENT_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_a_gradient_is_right_or_refused_naming_the_culprit(case: Case, defect: str) -> None:
    problem, preconditioner = build(case, defect)
    solver = ka.AdjointSolver(problem, method="gmres", preconditioner=preconditioner,
                              rtol=1e-12)
    culprit = DEFECTS[defect]
    try:
        result = solver.gradient(case.theta)
    except ka.KrylovAdjointError as exc:
        assert culprit is not None, f"{defect}: a right problem was refused: {exc}"
        assert names(exc, culprit), f"{defect}: expected an error naming {culprit}, got {exc!r}"
        return
    reference = case.reference()
    error = np.linalg.norm(result.gradient - reference) / max(np.linalg.norm(reference), 1e-300)
    assert error <= 1e-6, f"{defect}: a wrong gradient was returned (relative error {error:.2e})"


@pytest.mark.parametrize("defect", [d for d, c in DEFECTS.items() if c is not None])
@settings(max_examples=CHECK_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_check_problem_names_the_culprit(case: Case, defect: str) -> None:
    problem, preconditioner = build(case, defect)
    report = check_problem(problem, case.theta, preconditioner=preconditioner, rng=0)
    culprit = DEFECTS[defect]
    assert any(name.startswith(culprit) for name in report.failures), report.summary()


@settings(max_examples=CHECK_EXAMPLES, deadline=None)
@given(case=cases())
def test_check_problem_passes_the_problems_without_a_defect(case: Case) -> None:
    problem, _ = build(case, "none")
    report = check_problem(problem, case.theta, preconditioner="jacobi", rng=0)
    assert report.passed, report.summary()

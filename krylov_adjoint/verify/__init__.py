"""Verification tools: dot-product tests, derivative checks, Taylor tests, reports.

The same tools the test suite uses. They return frozen report objects with ``passed``, the
numbers and a ``summary()``; they never print. Each accepts a serial
:class:`~krylov_adjoint.AdjointProblem` or a PETSc ``DistributedProblem`` (then collective:
this rank's part of θ in, the same report on every rank out); see :mod:`.space`.

- :func:`dot_test`, :func:`operator_dot_test`, :func:`preconditioner_dot_test`: is the
  transpose really the transpose?
- :func:`operator_vjp_test`, :func:`operator_jvp_test`, :func:`rhs_vjp_test`,
  :func:`rhs_jvp_test`, :func:`objective_gradient_test`: are the derivative callbacks
  right?
- :func:`taylor_test`, :func:`taylor_test_solver`: is the whole gradient right?
- :func:`operator_vjp_jvp_test`, :func:`operator_jvp_transpose_test`,
  :func:`rhs_vjp_jvp_test`, :func:`objective_hessian_test`: are the second-order callbacks
  right?
- :func:`second_order_taylor_test`, :func:`hessian_gradient_test`,
  :func:`hessian_symmetry_test`: is the Hessian action right?
- :func:`check_problem`: all of the above on a problem, one report naming each failing
  callback.
"""

from .check import check_problem as check_problem
from .derivative import DerivativeReport as DerivativeReport
from .dot import DotTestReport as DotTestReport
from .dot import dot_test as dot_test
from .dot import operator_dot_test as operator_dot_test
from .dot import preconditioner_dot_test as preconditioner_dot_test
from .hessian import hessian_gradient_test as hessian_gradient_test
from .hessian import hessian_symmetry_test as hessian_symmetry_test
from .hessian import second_order_taylor_test as second_order_taylor_test
from .partials import ObjectiveGradientReport as ObjectiveGradientReport
from .partials import objective_gradient_test as objective_gradient_test
from .report import CheckResult as CheckResult
from .report import VerificationReport as VerificationReport
from .second_order import ObjectiveHessianReport as ObjectiveHessianReport
from .second_order import objective_hessian_test as objective_hessian_test
from .second_order import operator_jvp_transpose_test as operator_jvp_transpose_test
from .second_order import operator_vjp_jvp_test as operator_vjp_jvp_test
from .second_order import rhs_vjp_jvp_test as rhs_vjp_jvp_test
from .taylor import TaylorReport as TaylorReport
from .taylor import taylor_test as taylor_test
from .taylor import taylor_test_solver as taylor_test_solver
from .vjp import operator_jvp_test as operator_jvp_test
from .vjp import operator_vjp_test as operator_vjp_test
from .vjp import rhs_jvp_test as rhs_jvp_test
from .vjp import rhs_vjp_test as rhs_vjp_test

__all__ = [
    "dot_test", "operator_dot_test", "preconditioner_dot_test",
    "operator_vjp_test", "operator_jvp_test", "rhs_vjp_test", "rhs_jvp_test",
    "objective_gradient_test", "taylor_test", "taylor_test_solver",
    "second_order_taylor_test", "hessian_gradient_test", "hessian_symmetry_test",
    "operator_vjp_jvp_test", "operator_jvp_transpose_test", "rhs_vjp_jvp_test",
    "objective_hessian_test", "ObjectiveHessianReport",
    "check_problem",
    "DotTestReport", "DerivativeReport", "ObjectiveGradientReport", "TaylorReport",
    "CheckResult", "VerificationReport",
]

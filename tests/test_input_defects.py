"""Inputs that used to be accepted wrongly: complex data cast to real, fractional sizes.

Complex matrices and vectors must be refused with an :class:`~krylov_adjoint.InputError`
naming the argument (numpy would keep the real part with only a ``ComplexWarning``), and sizes
must be integers (``n=2.5`` used to be truncated to 2).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import krylov_adjoint as ka
from krylov_adjoint.adapters import (
    AssembledOperator,
    SparsityPattern,
    affine_operator,
    affine_rhs,
    element_operator,
    from_assembly,
    minimize,
    pattern_cotangent,
)

N = 5
COMPLEX_SPARSE = sp.diags([2.0 + 1.0j] * N, format="csr")
COMPLEX_DENSE = COMPLEX_SPARSE.toarray()
COMPLEX_VECTOR = np.full(N, 1.0 + 1.0j)
REAL_SPARSE = sp.identity(N, format="csr")
BAR = np.array([[1.0, -1.0], [-1.0, 1.0]])
CONN = np.array([[0, 1], [1, 2], [2, 3]])


def complex_operator() -> spla.LinearOperator:
    return spla.aslinearoperator(COMPLEX_SPARSE)


def functional() -> ka.LinearFunctional:
    return ka.LinearFunctional(np.ones(N))


def bars(**kwargs: Any) -> Any:
    return element_operator(BAR, CONN, 4, dirichlet_dofs=[0], **kwargs)


def diagonal_solver() -> ka.AdjointSolver:
    op = ka.ParametricOperator(lambda th, x: th * x, n=2, structure="spd",
                               vjp=lambda th, x, lam: lam * x)
    problem = ka.AdjointProblem(op, np.ones(2), ka.LeastSquaresMisfit(None, np.ones(2)),
                                n_params=2)
    return ka.AdjointSolver(problem)


def assemble_complex(theta: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(sp.diags(theta + 1.0j))


@dataclass(frozen=True)
class Case:
    """A construction that must refuse complex data, and the argument it must name."""

    name: str
    build: Callable[[], Any]
    argument: str
    error: type = ka.InputError


COMPLEX_CASES = [
    # the problem and its parts
    Case("problem-sparse-operator", lambda: ka.AdjointProblem(
        COMPLEX_SPARSE, np.ones(N), functional(), n_params=0), "operator"),
    Case("problem-dense-operator", lambda: ka.AdjointProblem(
        COMPLEX_DENSE, np.ones(N), functional(), n_params=0), "operator"),
    Case("problem-linear-operator", lambda: ka.AdjointProblem(
        complex_operator(), np.ones(N), functional(), n_params=0), "operator"),
    Case("problem-rhs", lambda: ka.AdjointProblem(
        REAL_SPARSE, COMPLEX_VECTOR, functional(), n_params=0), "rhs"),
    Case("rhs", lambda: ka.RightHandSide(COMPLEX_VECTOR), "rhs"),
    Case("rhs-list", lambda: ka.RightHandSide([1.0, 2.0j]), "rhs"),
    Case("constant-sparse", lambda: ka.ParametricOperator.constant(COMPLEX_SPARSE), "A"),
    Case("constant-dense", lambda: ka.ParametricOperator.constant(COMPLEX_DENSE), "A"),
    Case("constant-linear-operator", lambda: ka.ParametricOperator.constant(
        complex_operator()), "A"),
    Case("linear-functional", lambda: ka.LinearFunctional(COMPLEX_VECTOR), "c"),
    Case("linear-functional-list", lambda: ka.LinearFunctional([1.0, 1.0j]), "c"),
    Case("misfit-O", lambda: ka.LeastSquaresMisfit(COMPLEX_SPARSE, np.ones(N)), "O"),
    Case("misfit-O-dense", lambda: ka.LeastSquaresMisfit(COMPLEX_DENSE, np.ones(N)), "O"),
    Case("misfit-d", lambda: ka.LeastSquaresMisfit(None, COMPLEX_VECTOR), "d"),
    Case("misfit-weights", lambda: ka.LeastSquaresMisfit(None, np.ones(N),
                                                         weights=COMPLEX_VECTOR), "weights"),
    Case("tikhonov-alpha", lambda: ka.Tikhonov(1.0 + 1.0j), "alpha"),
    Case("tikhonov-L", lambda: ka.Tikhonov(1.0, L=COMPLEX_SPARSE), "L"),
    Case("tikhonov-theta-ref", lambda: ka.Tikhonov(1.0, theta_ref=COMPLEX_VECTOR), "theta_ref"),
    # affine parametrisations
    Case("affine-A0", lambda: affine_operator(COMPLEX_SPARSE, [REAL_SPARSE]), "A0"),
    Case("affine-A0-dense", lambda: affine_operator(COMPLEX_DENSE, [REAL_SPARSE]), "A0"),
    Case("affine-term", lambda: affine_operator(REAL_SPARSE, [REAL_SPARSE, COMPLEX_SPARSE]),
         "terms[1]"),
    Case("affine-term-array", lambda: affine_operator(None, COMPLEX_DENSE[None]), "terms[0]"),
    Case("affine-stacked-terms", lambda: affine_operator(
        REAL_SPARSE, sp.csr_matrix(np.full((N * N, 1), 1.0j))), "terms"),
    Case("affine-rhs-b0", lambda: affine_rhs(COMPLEX_VECTOR, REAL_SPARSE), "b0"),
    Case("affine-rhs-B", lambda: affine_rhs(None, COMPLEX_SPARSE), "B"),
    Case("affine-rhs-B-dense", lambda: affine_rhs(None, COMPLEX_DENSE), "B"),
    Case("affine-rhs-B-linear-operator", lambda: affine_rhs(None, complex_operator()), "B"),
    # element operators
    Case("element-matrices", lambda: element_operator(BAR * (1 + 1j), CONN, 4,
                                                      dirichlet_dofs=[0]), "element_matrices"),
    Case("element-parameter-map", lambda: bars(parameter_map=sp.identity(3) * 1j),
         "parameter_map"),
    Case("element-parameter-map-operator", lambda: bars(
        parameter_map=spla.aslinearoperator(sp.identity(3) * 1j)), "parameter_map"),
    Case("dirichlet-load", lambda: bars().dirichlet_rhs(np.full(4, 1j)), "load"),
    Case("dirichlet-values", lambda: bars().dirichlet_rhs(np.zeros(4), [1j]), "values"),
    # assembled matrices and patterns
    Case("from-assembly-theta0", lambda: from_assembly(
        lambda th: sp.csr_matrix(sp.diags(th)), lambda th, vbar: vbar, COMPLEX_VECTOR),
        "theta0"),
    Case("from-assembly-matrix", lambda: from_assembly(
        assemble_complex, lambda th, vbar: vbar, np.ones(N)), "assemble", ka.CallbackError),
    Case("pattern-from-matrix", lambda: SparsityPattern.from_matrix(COMPLEX_SPARSE), "A"),
    Case("pattern-values", lambda: SparsityPattern.from_matrix(REAL_SPARSE).matrix(
        COMPLEX_VECTOR), "values"),
    Case("pattern-cotangent-A", lambda: pattern_cotangent(
        COMPLEX_SPARSE, np.ones(N), np.ones(N)), "A"),
    Case("pattern-cotangent-lam", lambda: pattern_cotangent(
        REAL_SPARSE, COMPLEX_VECTOR, np.ones(N)), "lam"),
]


@pytest.mark.parametrize("case", COMPLEX_CASES, ids=lambda case: case.name)
def test_complex_data_is_refused_naming_the_argument(case: Case):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning means it was cast, not refused
        with pytest.raises(case.error, match="complex values in a real problem") as info:
            case.build()
    culprit = info.value.callback if case.error is ka.CallbackError else info.value.argument
    assert culprit == case.argument
    assert str(info.value).startswith(f"{case.argument}: ")


def test_complex_parameters_are_refused_as_parameters():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ka.InputError, match="theta0: got complex values .* the parameters "
                                                "θ are real, also for a complex system"):
            minimize(diagonal_solver(), np.ones(2) + 1j)


def test_the_documented_example_solves_no_real_part():
    with pytest.raises(ka.InputError, match="operator: got complex values"):
        ka.AdjointProblem(sp.diags([2 + 1j] * 5, format="csr"), np.ones(5),
                          ka.LinearFunctional(np.ones(5)), n_params=0)


def test_complex_callback_outputs_are_refused_like_inputs():
    """Callback outputs: the same wording, as a CallbackError naming the callback."""
    op = ka.ParametricOperator(lambda th, x: (1.0 + 1.0j) * x, n=N, structure="spd",
                               depends_on_theta=False)
    problem = ka.AdjointProblem(op, np.ones(N), functional(), n_params=0)
    with pytest.raises(ka.CallbackError, match="complex values in a real problem"):
        problem.matvec(np.zeros(0), np.ones(N))


ADAPTER_CALLBACK_CASES = {
    "values_vjp": lambda: AssembledOperator(
        SparsityPattern.from_matrix(REAL_SPARSE), lambda th: th, lambda th, vbar: vbar * 1j,
        structure="spd").vjp(np.ones(N), np.ones(N), np.ones(N)),
    "values_jvp": lambda: AssembledOperator(
        SparsityPattern.from_matrix(REAL_SPARSE), lambda th: th, lambda th, vbar: vbar,
        values_jvp=lambda th, dth: dth * 1j, structure="spd").jvp(
        np.ones(N), np.ones(N), np.ones(N)),
    "assembly_jvp": lambda: from_assembly(
        lambda th: sp.csr_matrix(sp.diags(th)), lambda th, vbar: vbar, np.ones(N),
        assembly_jvp=lambda th, dth: dth * 1j).jvp(np.ones(N), np.ones(N), np.ones(N)),
    "scaling 'custom' value": lambda: bars(
        scaling=(lambda th: th * 1j, lambda th: np.ones_like(th))).matrix(np.ones(3)),
}


@pytest.mark.parametrize("callback", sorted(ADAPTER_CALLBACK_CASES))
def test_complex_outputs_of_adapter_callbacks_are_refused(callback):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ka.CallbackError, match="complex values in a real problem") as info:
            ADAPTER_CALLBACK_CASES[callback]()
    assert info.value.callback == callback


def test_real_data_still_builds():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        problem = ka.AdjointProblem(REAL_SPARSE, [1, 2, 3, 4, 5], ka.LinearFunctional(
            np.arange(N)), n_params=0)
        ka.LeastSquaresMisfit(np.eye(N), np.ones(N), weights=np.ones(N))
        ka.Tikhonov(np.float64(2.0), L=REAL_SPARSE, theta_ref=np.zeros(N))
        affine_operator(REAL_SPARSE, np.ones((2, N, N)))
        affine_rhs(np.ones(N), spla.aslinearoperator(REAL_SPARSE))
    assert problem.n == N


# -- sizes -------------------------------------------------------------------------------
def operator_of_size(n: Any) -> ka.ParametricOperator:
    return ka.ParametricOperator(lambda th, x: x, n=n, structure="spd", depends_on_theta=False)


def problem_with(n_params: Any) -> ka.AdjointProblem:
    return ka.AdjointProblem(REAL_SPARSE, np.ones(N), functional(), n_params=n_params)


def assembled_with(n_params: Any) -> AssembledOperator:
    return AssembledOperator(SparsityPattern.from_matrix(REAL_SPARSE), lambda th: th,
                             lambda th, vbar: vbar, structure="spd", n_params=n_params)


SIZE_ARGUMENTS = {
    "n": operator_of_size,
    "n_params": problem_with,
    "AssembledOperator.n_params": assembled_with,
    "SparsityPattern.n": lambda n: SparsityPattern(np.arange(3), np.arange(2), n),
    "SparsityPattern.from_coordinates.n": lambda n: SparsityPattern.from_coordinates(
        [0, 1], [0, 1], n),
    "n_dofs": lambda n: element_operator(BAR, CONN, n),
}


@pytest.mark.parametrize("bad", [2.5, 3.0, np.float64(4.0), True, np.True_, "3", None],
                         ids=repr)
@pytest.mark.parametrize("where", sorted(SIZE_ARGUMENTS))
def test_non_integral_sizes_are_refused(where, bad):
    if bad is None and where == "AssembledOperator.n_params":
        pytest.skip("None means unknown here")
    argument = where.rsplit(".", 1)[-1]
    with pytest.raises(ka.InputError, match="must be an integer") as info:
        SIZE_ARGUMENTS[where](bad)
    assert info.value.argument == argument


@pytest.mark.parametrize("where,good", [
    ("n", np.int64(3)), ("n", 3), ("n_params", np.int32(0)), ("n_params", 2),
    ("AssembledOperator.n_params", np.int16(5)), ("SparsityPattern.n", np.uint8(2)),
    ("SparsityPattern.from_coordinates.n", np.int64(2)), ("n_dofs", np.int64(4)),
])
def test_integer_sizes_are_accepted_as_python_ints(where, good):
    built = SIZE_ARGUMENTS[where](good)
    if where == "n":
        assert built.n == int(good) and type(built.n) is int
    if where.endswith("n_params"):
        assert built.n_params == int(good) and type(built.n_params) is int


@pytest.mark.parametrize("where,bad", [("n", 0), ("n", -1), ("n_params", -1),
                                       ("SparsityPattern.n", 0), ("n_dofs", 0)])
def test_sizes_out_of_range_are_refused(where, bad):
    with pytest.raises(ka.InputError, match=">= 0|positive"):
        SIZE_ARGUMENTS[where](bad)

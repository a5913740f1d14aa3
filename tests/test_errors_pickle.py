"""Every exception of the library survives pickle, so that it crosses process boundaries.

A worker of ``multiprocessing`` or ``concurrent.futures`` sends its exception back pickled:
an exception that cannot be rebuilt hangs ``Pool.apply_async(...).get()`` and breaks a
``ProcessPoolExecutor``.
"""

from __future__ import annotations

import concurrent.futures
import copy
import inspect
import pickle
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import krylov_adjoint as ka
from krylov_adjoint import errors
from krylov_adjoint.backends.petsc import collective
from krylov_adjoint.krylov import ConvergenceReason, SolveResult


def failed_result() -> SolveResult:
    return SolveResult(x=np.arange(3.0), reason=ConvergenceReason.DIVERGED_MAXITER,
                       iterations=2, residual_norms=np.array([1.0, 0.5, 0.25]), target=1e-8,
                       rhs_norm=1.0, seconds=0.01, method="gmres", message="ran out")


def failed_newton_result() -> Any:
    from krylov_adjoint.newton import NewtonResult

    return NewtonResult(
        theta=np.arange(3.0), objective=1.0, gradient=np.ones(3), gradient_norm=3**0.5,
        initial_gradient_norm=2.0, target=2e-6, iterations=0, converged=False,
        reason="maxiter", message="1 iterations reached", history=(), gradient_evaluations=1,
        hessian_actions=0, objective_evaluations=0, solves=2)


FAILURES = (collective.RankFailure(1, "operator.matvec", "ValueError", "bad value"),
            collective.RankFailure(3, "operator.matvec", "CallbackError", "wrong shape"))
INPUT_FAILURES = (collective.RankFailure(0, "theta", "InputError", "wrong size", True),)


def with_note(exc: BaseException) -> BaseException:
    exc.add_note("a note added on the way up")
    exc.extra_attribute = [1, 2, 3]
    return exc


EXCEPTIONS = {
    "KrylovAdjointError": lambda: errors.KrylovAdjointError("something failed"),
    "InputError": lambda: errors.InputError("theta", "expected shape (3,), got (2,)"),
    "CallbackError": lambda: errors.CallbackError("operator.vjp", "returned None"),
    "MissingCallbackError": lambda: errors.MissingCallbackError("operator.jvp was not given"),
    "NonFiniteError": lambda: errors.NonFiniteError("rhs", "contains 1 non-finite value"),
    "ConvergenceError": lambda: errors.ConvergenceError(failed_result(), "adjoint"),
    "ConvergenceError-default-phase": lambda: errors.ConvergenceError(failed_result()),
    "OptimizationError": lambda: errors.OptimizationError(failed_newton_result()),
    "MissingDependencyError": lambda: errors.MissingDependencyError(
        "the PETSc backend needs 'petsc4py'"),
    "MissingDependencyError-with-name": lambda: errors.MissingDependencyError(
        "needs tqdm", name="tqdm"),
    "InputError-with-note": lambda: with_note(errors.InputError("b0", "complex")),
    "CollectiveError": lambda: collective.CollectiveError(FAILURES, "primal solve", 4),
    "CollectiveError-count": lambda: collective.CollectiveError(FAILURES[:1], "gradient", 8, 5),
    "CollectiveCallbackError": lambda: collective.CollectiveCallbackError(
        FAILURES, "gradient", 4, 2),
    "CollectiveInputError": lambda: collective.CollectiveInputError(INPUT_FAILURES, "theta", 2),
}


def library_exception_classes() -> set[type]:
    """Every exception class defined in the library's error modules."""
    classes = set()
    for module in (errors, collective):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                classes.add(obj)
    return classes


def test_every_exception_class_is_covered():
    covered = {type(factory()) for factory in EXCEPTIONS.values()}
    assert library_exception_classes() <= covered


def assert_same(restored: BaseException, original: BaseException) -> None:
    assert type(restored) is type(original)
    assert str(restored) == str(original)
    assert restored.args == original.args
    assert getattr(restored, "__notes__", None) == getattr(original, "__notes__", None)
    for name, value in vars(original).items():
        if name == "result" and not isinstance(value, SolveResult):  # a NewtonResult
            assert restored.result.reason == value.reason
            np.testing.assert_array_equal(restored.result.theta, value.theta)
        elif name == "result":
            assert restored.result.reason is value.reason
            assert restored.result.iterations == value.iterations
            np.testing.assert_array_equal(restored.result.x, value.x)
            np.testing.assert_array_equal(restored.result.residual_norms, value.residual_norms)
        else:
            assert getattr(restored, name) == value, name
    if isinstance(original, ImportError):
        assert (restored.name, restored.path) == (original.name, original.path)


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
@pytest.mark.parametrize("protocol", [0, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_pickle_round_trip_keeps_type_message_and_attributes(name, protocol):
    original = EXCEPTIONS[name]()
    restored = pickle.loads(pickle.dumps(original, protocol=protocol))
    assert_same(restored, original)


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_copy_keeps_type_message_and_attributes(name):
    original = EXCEPTIONS[name]()
    assert_same(copy.copy(original), original)
    assert_same(copy.deepcopy(original), original)


def test_named_attributes_survive():
    err = pickle.loads(pickle.dumps(EXCEPTIONS["ConvergenceError"]()))
    assert err.phase == "adjoint" and err.result.reason is ConvergenceReason.DIVERGED_MAXITER
    err = pickle.loads(pickle.dumps(EXCEPTIONS["CollectiveCallbackError"]()))
    assert (err.failures, err.phase, err.nranks, err.count) == (FAILURES, "gradient", 4, 2)
    assert err.callback == "operator.matvec" and err.rank == 1
    err = pickle.loads(pickle.dumps(EXCEPTIONS["CollectiveInputError"]()))
    assert err.argument == "theta" and isinstance(err, ka.InputError)


def unconverged_solve(n: int) -> SolveResult:
    """Run in a worker process: a solve stopped after 2 iterations, raising ConvergenceError."""
    A = sp.diags([np.arange(1.0, n + 1.0)], [0], format="csr")
    return ka.krylov.solve(A, np.ones(n), method="gmres", maxiter=2, rtol=1e-12,
                           raise_on_failure=True, phase="primal")


def test_convergence_error_crosses_a_process_pool():
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(unconverged_solve, 50)
        with pytest.raises(ka.ConvergenceError) as info:
            future.result(timeout=120)
    err = info.value
    assert err.phase == "primal"
    assert isinstance(err.result, SolveResult)
    assert not err.result.converged
    assert err.result.reason is ConvergenceReason.DIVERGED_MAXITER
    assert err.result.x.shape == (50,)
    assert "primal solve did not converge" in str(err)

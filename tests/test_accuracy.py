"""The certificate of a gradient and the adaptive choice of tolerances, on both backends."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import BACKENDS, dense_reference, params, petsc_missing, relative_error, run, run_case

import krylov_adjoint as ka
from krylov_adjoint.adjoint import engine as engine_module
from krylov_adjoint.adjoint.accuracy import (
    LOOSEST_RTOL,
    AccuracyTarget,
    ToleranceController,
    correction_iterations,
    merge_solves,
)
from krylov_adjoint.adjoint.reuse import PreconditionerReuse

#: The certificate's promise, tested: the true gradient error within this factor of the
#: estimate (both ways).
WITHIN = 2.0

TOLERANCES = (1e-2, 1e-4, 1e-6, 1e-8)


def _theta(model: ka.gallery.ModelProblem, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return model.theta + 0.3 * rng.standard_normal(model.theta.size)


@pytest.mark.parametrize("case", params())
def test_the_estimate_is_within_2x_of_the_true_gradient_error(case):
    model = case.spec.build()
    checked = 0
    for seed in (0, 1):
        theta = _theta(model, seed)
        reference = dense_reference(model, theta)
        scale = np.linalg.norm(reference.gradient)
        for rtol in TOLERANCES:
            with run_case(case, rtol=rtol, warm_start=False) as r:
                result = r.solver.gradient(r.local(theta))
                gradient = r.whole_gradient(result)
            estimate = result.error_estimate
            true = np.linalg.norm(gradient - reference.gradient)
            if true <= 1e-11 * scale:  # round-off: nothing left to estimate
                continue
            checked += 1
            ratio = true / estimate.gradient_error
            assert 1 / WITHIN <= ratio <= WITHIN, (rtol, seed, true, estimate)
    assert checked, "every solve was exact to round-off: the test checked nothing"


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["amg"]))
def test_the_dual_weighted_residual_corrects_the_objective(case):
    model = case.spec.build()
    theta = _theta(model, 2)
    exact = dense_reference(model, theta).objective
    with run_case(case, rtol=1e-3, warm_start=False) as r:
        result = r.solver.gradient(r.local(theta))
    plain, corrected = abs(result.objective - exact), abs(result.objective_corrected - exact)
    assert plain > 1e-12 * abs(exact), "the loose solve was exact: nothing to correct"
    assert corrected <= 0.1 * plain, (plain, corrected)


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["amg", "jacobi"]))
def test_the_corrected_objectives_error_is_estimated(case):
    model = case.spec.build()
    checked = 0
    for seed, rtol in ((2, 1e-2), (3, 1e-3), (4, 1e-4)):
        theta = _theta(model, seed)
        exact = dense_reference(model, theta).objective
        with run_case(case, rtol=rtol, warm_start=False) as r:
            result = r.solver.gradient(r.local(theta))
        true = abs(result.objective_corrected - exact)
        if true <= 1e-12 * abs(exact):  # round-off: nothing left to estimate
            continue
        checked += 1
        ratio = true / result.error_estimate.objective_error
        assert 1 / WITHIN <= ratio <= WITHIN, (rtol, true, result.error_estimate)
        assert true < abs(result.objective - exact)  # second order: J + λᵀr is better
    assert checked, "every corrected objective was exact to round-off"


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["amg", "jacobi"]))
@pytest.mark.parametrize("eta", [1e-1, 1e-3, 1e-6])
def test_adaptive_gradients_meet_their_target(case, eta):
    model = case.spec.build()
    with run_case(case, rtol=1e-12, accuracy=eta) as r:
        for seed in (3, 4, 5):  # a path: the controller learns from the previous calls
            theta = _theta(model, seed)
            result = r.solver.gradient(r.local(theta))
            reference = dense_reference(model, theta)
            true = relative_error(r.whole_gradient(result), reference.gradient)
            report, estimate = result.accuracy, result.error_estimate
            assert report.mode == "adaptive" and report.target.gradient_rtol == eta
            assert report.primal_rtol >= 1e-12 and report.adjoint_rtol >= 1e-12
            for solve, rtol in ((result.primal, report.primal_rtol),
                                (result.adjoint_solve, report.adjoint_rtol)):
                # the solves stopped where the report says, not at the solver's own rtol
                assert solve.target == pytest.approx(rtol * solve.rhs_norm), (solve, report)
            assert estimate.gradient_relative_error <= eta, report
            assert true <= WITHIN * eta, (true, report)


@pytest.mark.parametrize("case", params(methods=["auto"], preconditioners=["amg"]))
def test_the_correction_solves_stop_at_their_own_tolerance(case):
    model = case.spec.build()
    with run_case(case, rtol=1e-12, warm_start=False) as r:
        result = r.solver.gradient(r.local(_theta(model, 6)))
    full = result.primal.iterations + result.adjoint_solve.iterations
    assert result.error_estimate.correction_iterations < full / 2, (result.error_estimate, full)


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=[pytest.mark.skip(reason=petsc_missing())] if b != "serial"
                 and petsc_missing() else []) for b in BACKENDS])
def test_cg_corrections_stop_at_the_count_the_main_solves_predict(backend, monkeypatch):
    """With a strong preconditioner the corrections stop before the residual test, and the
    estimate still holds."""
    model = ka.gallery.diffusion_2d(64)
    theta = _theta(model, 7)
    family = "serial" if backend == "serial" else "petsc"
    with run(family, model, method="cg", preconditioner="amg", rtol=1e-11,
             error_estimate=False) as r:
        exact = r.whole_gradient(r.solver.gradient(r.local(theta)))
    corrections = {}
    for capped in (True, False):
        if not capped:
            monkeypatch.setattr(engine_module, "correction_iterations", lambda *solves: None)
        with run(family, model, method="cg", preconditioner="amg", rtol=1e-6,
                 warm_start=False) as r:
            result = r.solver.gradient(r.local(theta))
            gradient = r.whole_gradient(result)
        estimate = result.error_estimate
        ratio = np.linalg.norm(gradient - exact) / estimate.gradient_error
        assert 1 / 1.25 <= ratio <= 1.25, (capped, ratio, estimate)
        corrections[capped] = estimate.correction_iterations
        if capped:
            cap = correction_iterations(result.primal, result.adjoint_solve)
            assert cap is not None and corrections[True] <= 2 * cap
    assert corrections[True] < corrections[False], corrections


@pytest.mark.parametrize("case", params(problems=["tikhonov"], methods=["bicgstab"],
                                        preconditioners=["none"]))
def test_corrections_without_a_predicted_count_run_to_their_tolerance(case, monkeypatch):
    """No cap for BiCGStab: each correction solve stops at its own residual test (here the
    adjoint correction needs one iteration more than the primal one, which a cap taken from
    the first correction's count would cut)."""
    model = case.spec.build()
    corrections = []
    solve = engine_module.GradientEngine._solve

    def recorded(engine, phase, *args, **kwargs):
        x, result = solve(engine, phase, *args, **kwargs)
        if phase in ("tangent", "output_adjoint"):
            corrections.append(result)
        return x, result

    monkeypatch.setattr(engine_module.GradientEngine, "_solve", recorded)
    with run_case(case, rtol=1e-4, warm_start=False) as r:
        r.solver.gradient(r.local(_theta(model, 1)))
    assert len(corrections) == 2 and all(c.converged for c in corrections), corrections


def test_adaptive_rounds_continue_the_solves_and_sum_their_iterations():
    model = ka.gallery.diffusion_2d(24, 24)
    solver = ka.AdjointSolver(model.problem, rtol=1e-12, accuracy="adaptive")
    solver._tolerances.learn(gradient_error=1e-12, gradient_norm=1.0, objective_error=0.0,
                             relative_residual=1.0)  # a wrong model: the first try misses
    result = solver.gradient(model.theta, accuracy=AccuracyTarget(1e-8))
    assert result.accuracy.rounds >= 2, result.accuracy
    assert result.primal.extra["rounds"] == result.accuracy.rounds
    assert result.primal.iterations == len(result.primal.residual_norms) - 1
    assert result.error_estimate.gradient_relative_error <= 1e-8
    fixed = ka.AdjointSolver(model.problem, rtol=1e-12).gradient(model.theta)
    assert relative_error(result.gradient, fixed.gradient) <= 2e-8


def test_adaptive_accuracy_stops_at_the_solvers_rtol():
    model = ka.gallery.diffusion_2d(16, 16)
    solver = ka.AdjointSolver(model.problem, rtol=1e-3, accuracy=AccuracyTarget(1e-12))
    result = solver.gradient(model.theta)
    assert result.accuracy.primal_rtol == 1e-3
    assert "rtol reached" in result.accuracy.reason
    assert result.error_estimate.gradient_relative_error > 1e-12


def test_the_objective_target_tightens_the_primal_solve():
    model = ka.gallery.diffusion_2d(24, 24)
    solver = ka.AdjointSolver(model.problem, rtol=1e-14)
    loose = solver.gradient(model.theta, accuracy=AccuracyTarget(0.5))
    solver.reset_warm_start()
    tight = solver.gradient(model.theta, accuracy=AccuracyTarget(0.5, objective_atol=1e-16))
    assert tight.error_estimate.objective_error <= 1e-16
    assert tight.accuracy.primal_rtol < loose.accuracy.primal_rtol


def test_fixed_accuracy_reports_its_tolerances_and_estimates():
    model = ka.gallery.diffusion_2d(16, 16)
    result = ka.AdjointSolver(model.problem, rtol=1e-9, adjoint_rtol=1e-7).gradient(model.theta)
    assert (result.accuracy.mode, result.accuracy.primal_rtol, result.accuracy.adjoint_rtol) \
        == ("fixed", 1e-9, 1e-7)
    record = result.as_dict()
    assert record["accuracy_mode"] == "fixed" and "estimate_gradient_error" in record
    assert "estimates:" in result.summary()
    pickle.loads(pickle.dumps(result.error_estimate))
    plain = ka.AdjointSolver(model.problem, error_estimate=False).gradient(model.theta)
    assert plain.error_estimate is None and plain.objective_corrected == plain.objective


@pytest.mark.parametrize("bad, error", [
    ("exact", ValueError), (0.0, ValueError), (1.5, ValueError), (True, TypeError)])
def test_bad_accuracy_options_are_refused(bad, error):
    model = ka.gallery.heat_1d(8)
    with pytest.raises(error):
        ka.AdjointSolver(model.problem, accuracy=bad).gradient(model.theta)


def test_a_target_without_the_estimate_is_refused():
    model = ka.gallery.heat_1d(8)
    solver = ka.AdjointSolver(model.problem, error_estimate=False)
    with pytest.raises(ValueError, match="error_estimate"):
        solver.gradient(model.theta, accuracy=1e-3)
    with pytest.raises(ValueError, match="objective_atol"):
        AccuracyTarget(1e-3, objective_atol=0.0)


def test_the_controller_aims_below_the_target_between_its_bounds():
    control = ToleranceController(floor=1e-8)
    assert control.first_rtol(AccuracyTarget(0.5)) == ToleranceController.START_RTOL
    control.learn(gradient_error=1.0, gradient_norm=1.0, objective_error=1.0,
                  relative_residual=1e-6)
    assert control.first_rtol(AccuracyTarget(1e-6)) == 1e-8          # the floor
    control.learn(gradient_error=1e-9, gradient_norm=1.0, objective_error=1e-9,
                  relative_residual=1e-6)
    assert control.first_rtol(AccuracyTarget(0.9)) == LOOSEST_RTOL  # the loosest
    assert control.tighter_rtol(1e-4, shortfall=10.0, reached=1e-5) < 1e-6


def test_the_reuse_cap_is_a_rate_times_the_digits_asked():
    rule = PreconditionerReuse(1.5, reuse=True, fixed=False)
    rule.set_up()
    rule.record_primal(0, [1.0])                         # no reduction: no baseline
    assert rule.iteration_cap(1000, rtol=1e-8) == 1000
    rule.record_primal(2, [1e-3, 1e-7])                  # a warm start: 2 iterations, 4 decades
    assert rule.iteration_cap(1000, rtol=1e-8) == 7      # 1.5 × max(0.5 × 8, 3) + 1
    assert rule.iteration_cap(1000, rtol=1e-2) == 5      # at least 1.5 × 3 + 1
    rule.record_primal(50, [1.0, 1e-8])                  # only the first one counts
    assert rule.iteration_cap(1000, rtol=1e-8) == 7
    rule.set_up()                                        # a new set-up, a new baseline
    assert rule.iteration_cap(1000, rtol=1e-8) == 1000


def test_merged_solves_keep_the_later_reason_and_the_whole_history():
    model = ka.gallery.heat_1d(8)
    result = ka.AdjointSolver(model.problem, rtol=1e-10).gradient(model.theta)
    merged = merge_solves(result.primal, result.adjoint_solve)
    assert merged.reason is result.adjoint_solve.reason
    assert merged.iterations == result.primal.iterations + result.adjoint_solve.iterations

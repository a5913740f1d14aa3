"""The PETSc backend in this process (one rank): building blocks, API, errors.

Multi-rank behaviour is tested under mpirun in ``test_petsc_mpi.py``. petsc4py is a test
dependency: without it these tests fail (they do not skip).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import krylov_adjoint as ka
from krylov_adjoint import gallery as serial_gallery
from krylov_adjoint.backends.petsc import (
    CollectiveCallbackError,
    CollectiveInputError,
    DistributedOperator,
    DistributedProblem,
    ErrorGuard,
    Layout,
    LocalStencil,
    PetscAdjointSolver,
    StructuredGrid,
    gallery,
    verify,
)
from krylov_adjoint.backends.petsc._import import mpi, petsc
from krylov_adjoint.backends.petsc.reasons import from_petsc, petsc_reason_name


@pytest.fixture(scope="module")
def PETSc():
    return petsc()


def diagonal_problem(n: int = 5, structure: str = "spd") -> DistributedProblem:
    """A(θ) = diag(θ), b = 1, J = sum(x): dJ/dθ = −1/θ²."""
    op = DistributedOperator(lambda th, x: th * x, n=n, structure=structure,
                             rmatvec=None if structure != "general" else (lambda th, y: th * y),
                             vjp=lambda th, x, lam: lam * x, jvp=lambda th, x, d: d * x)
    m = op.layout.local_size
    return DistributedProblem(op, np.ones(m), ka.LinearFunctional(np.ones(m)),
                              theta_layout=op.layout)


# -- optional dependency -----------------------------------------------------------------------
def test_missing_petsc4py_names_the_extra():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'petsc4py':\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import krylov_adjoint.backends.petsc as p\n"
        "try:\n"
        "    p.StructuredGrid((4,))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "MissingDependencyError" in out.stdout, out.stdout + out.stderr
    assert "krylov-adjoint[mpi]" in out.stdout


# -- small pieces -----------------------------------------------------------------------------
def test_reason_mapping(PETSc):
    reasons = PETSc.KSP.ConvergedReason
    assert from_petsc(reasons.CONVERGED_RTOL) is ka.ConvergenceReason.CONVERGED_RTOL
    assert from_petsc(reasons.DIVERGED_MAX_IT) is ka.ConvergenceReason.DIVERGED_MAXITER
    assert from_petsc(reasons.DIVERGED_NANORINF) is ka.ConvergenceReason.DIVERGED_NAN
    assert from_petsc(reasons.DIVERGED_INDEFINITE_PC) is \
        ka.ConvergenceReason.DIVERGED_INDEFINITE_PC
    assert from_petsc(reasons.DIVERGED_PCSETUP_FAILED) is ka.ConvergenceReason.DIVERGED_OTHER
    assert petsc_reason_name(reasons.DIVERGED_PCSETUP_FAILED) == "DIVERGED_PCSETUP_FAILED"


def test_layout_sizes_and_errors():
    layout = Layout.create(7)
    assert (layout.size, layout.local_size, layout.start, layout.stop) == (7, 7, 0, 7)
    assert Layout.create(local_size=3).size == 3
    with pytest.raises(ValueError, match="add up to 3, but the global size is 4"):
        Layout.create(4, 3)
    with pytest.raises(CollectiveInputError, match="rank 0"):
        Layout.create(local_size=-1)
    np.testing.assert_array_equal(layout.gather(np.arange(7.0)), np.arange(7.0))


def test_error_guard_reports_rank_and_callback():
    guard = ErrorGuard(mpi().COMM_WORLD)
    guard.checkpoint("nothing")  # no failure: no error
    guard.record("operator.vjp", ValueError("boom"))
    with pytest.raises(CollectiveCallbackError) as info:
        guard.checkpoint("the gradient")
    assert info.value.callback == "operator.vjp" and info.value.rank == 0
    assert isinstance(info.value, ka.CallbackError)
    assert not guard.failed


@pytest.mark.parametrize("shape", [(5,), (6, 4), (4, 3, 5)])
def test_local_stencil_matches_the_serial_flux_stencil(shape):
    rng = np.random.default_rng(0)
    log_k = rng.standard_normal(int(np.prod(shape)))
    from krylov_adjoint.backends.petsc.diffusion import LocalDiffusion
    from krylov_adjoint.gallery._harmonic import HarmonicDiffusion

    spacing = tuple(1.0 / n for n in shape)
    serial = HarmonicDiffusion(log_k, shape, spacing)
    grid = StructuredGrid(shape)
    local = LocalDiffusion(grid, log_k.reshape(shape))
    x, lam = rng.standard_normal((2, log_k.size))
    np.testing.assert_allclose(local.stencil.apply(x), serial.stencil.apply(x), rtol=1e-13)
    np.testing.assert_allclose(local.vjp_cells(x, lam), serial.vjp_cells(x, lam), rtol=1e-12)
    dth = rng.standard_normal(log_k.size)
    np.testing.assert_allclose(local.jvp_stencil(dth).apply(x),
                               serial.jvp_stencil(dth).apply(x), rtol=1e-12)
    assert abs(local.stencil.rows() - serial.stencil.assemble()).max() < 1e-10
    upwind = serial.stencil + serial.stencil.T.plus_identity(0.5)
    converted = LocalStencil.from_global(grid, upwind.diagonal, upwind.upper, upwind.lower)
    np.testing.assert_allclose(converted.apply_transpose(x), upwind.apply_transpose(x),
                               rtol=1e-13)
    grid.destroy()


def test_gallery_data_match_the_serial_gallery():
    model = gallery.convection_diffusion_2d(6, 5, peclet=10.0)
    serial = serial_gallery.convection_diffusion_2d(6, 5, peclet=10.0)
    np.testing.assert_array_equal(model.gather_theta(model.theta), serial.theta)
    assert model.problem.n_params == serial.n_params


# -- the solver ----------------------------------------------------------------------------------
def test_gradient_of_a_diagonal_operator_and_the_result_record():
    problem = diagonal_problem()
    theta = np.array([1.0, 2.0, 4.0, 0.5, 3.0])
    calls = []
    with PetscAdjointSolver(problem, rtol=1e-12, preconditioner="none",
                            monitor=lambda phase, its, r: calls.append(phase)) as solver:
        result = solver.gradient(theta)
        np.testing.assert_allclose(result.gradient, -1 / theta**2, rtol=1e-10)
        np.testing.assert_allclose(result.x, 1 / theta, rtol=1e-10)
        assert result.objective == pytest.approx(np.sum(1 / theta))
        assert isinstance(result, ka.GradientResult)
        for key in ("setup", "primal", "objective", "adjoint", "gradient", "total"):
            assert key in result.times
        assert result.primal.reason is ka.ConvergenceReason.CONVERGED_RTOL
        assert result.primal.residual_norms[-1] <= result.primal.target
        assert {"primal", "adjoint"} <= set(calls)
        np.testing.assert_allclose(result.gather_gradient(), -1 / theta**2, rtol=1e-10)
        assert result.gradient_vec.getSize() == 5
        assert "J = " in result.summary()
        derivative = solver.directional_derivative(theta, np.ones(5))
        assert derivative.derivative == pytest.approx(float(np.sum(-1 / theta**2)),
                                                      rel=1e-9)


def test_defaults_follow_the_declared_structure():
    model = gallery.convection_diffusion_2d(8, 6, peclet=10.0)
    with pytest.raises(ValueError, match="symmetric positive definite"):
        PetscAdjointSolver(model.problem, method="cg")
    with pytest.raises(ValueError, match="adjoint_pc must be one of"):
        PetscAdjointSolver(model.problem, adjoint_pc="wrong")
    with PetscAdjointSolver(model.problem) as solver:
        assert solver.primal_ksp.getType() == "gmres"
        assert solver.primal_ksp.getPC().getType() == "gamg"
        result = solver.gradient(model.theta)
        assert result.extra["adjoint_pc"] == "transpose"
        assert solver.primal_ksp.getPCSide() == petsc().PC.Side.RIGHT


def test_unprefixed_setup_options_hold_during_the_set_up_only():
    model = gallery.diffusion_2d(24)
    options = petsc().Options()
    with PetscAdjointSolver(model.problem, rtol=1e-12) as solver:
        reference = solver.gradient(model.theta).gradient
    # "rap" on one rank (a SeqAIJ matrix); "allatonce" is for MPIAIJ
    with PetscAdjointSolver(model.problem, rtol=1e-12,
                            options={"matptap_via": "rap"}) as solver:
        assert solver.backend._setup_defaults == {"matptap_via": "rap"}
        gradient = solver.gradient(model.theta).gradient
        assert not options.hasName("matptap_via")  # gone after the set-up
        assert not petsc().Options("ka_primal_").hasName("matptap_via")
    np.testing.assert_allclose(gradient, reference, rtol=1e-9)
    options.setValue("matptap_via", "scalable")  # the user's own setting is kept
    try:
        with PetscAdjointSolver(model.problem, options={"matptap_via": "rap"}) as solver:
            solver.gradient(model.theta)
        assert options.getString("matptap_via") == "scalable"
    finally:
        options.delValue("matptap_via")


def test_hypre_is_refused_clearly_when_not_built():
    model = gallery.diffusion_2d(6)
    if petsc().Sys.hasExternalPackage("hypre"):
        pytest.skip("this PETSc build has hypre")
    with pytest.raises(ValueError, match="no hypre"):
        PetscAdjointSolver(model.problem, preconditioner="hypre")


def test_bad_theta_and_callbacks_raise_collective_errors():
    problem = diagonal_problem()
    with PetscAdjointSolver(problem, preconditioner="none") as solver:
        with pytest.raises(CollectiveInputError, match="theta.*rank 0|rank 0.*theta"):
            solver.gradient(np.ones(4))
        assert solver.gradient(np.ones(5)).primal.converged  # still usable
    bad = DistributedOperator(lambda th, x: th * x, n=5, structure="spd",
                              vjp=lambda th, x, lam: np.ones(3))
    m = bad.layout.local_size
    problem = DistributedProblem(bad, np.ones(m), ka.LinearFunctional(np.ones(m)),
                                 theta_layout=bad.layout)
    with PetscAdjointSolver(problem, preconditioner="none") as solver:
        with pytest.raises(CollectiveCallbackError, match=r"operator.vjp.*expected shape"):
            solver.gradient(np.ones(5))


def test_vec_interface_callbacks():
    def mult(theta, x, out):
        out.pointwiseMult(theta, x)

    def vjp(theta, x, lam, out):
        out.pointwiseMult(lam, x)

    op = DistributedOperator(mult, n=4, structure="spd", vjp=vjp, interface="vecs")
    m = op.layout.local_size
    problem = DistributedProblem(op, np.ones(m), ka.LinearFunctional(np.ones(m)),
                                 theta_layout=op.layout)
    theta = np.array([1.0, 2.0, 4.0, 8.0])
    with PetscAdjointSolver(problem, preconditioner="none", rtol=1e-12) as solver:
        np.testing.assert_allclose(solver.gradient(theta).gradient, -1 / theta**2,
                                   rtol=1e-10)


def test_unconverged_solve_raises_or_reports():
    model = gallery.diffusion_2d(16)
    with PetscAdjointSolver(model.problem, maxiter=1, preconditioner="jacobi") as solver:
        with pytest.raises(ka.ConvergenceError, match="primal solve did not converge"):
            solver.gradient(model.theta)
    with PetscAdjointSolver(model.problem, maxiter=1, preconditioner="jacobi",
                            raise_on_failure=False) as solver:
        result = solver.gradient(model.theta)
        assert result.primal.reason is ka.ConvergenceReason.DIVERGED_MAXITER


def test_zero_rhs_gives_zero_solution():
    op = DistributedOperator(lambda th, x: th * x, n=3, structure="spd",
                             vjp=lambda th, x, lam: lam * x)
    problem = DistributedProblem(op, np.zeros(3), ka.LinearFunctional(np.ones(3)),
                                 theta_layout=op.layout)
    with PetscAdjointSolver(problem, preconditioner="none") as solver:
        result = solver.solve(np.ones(3))
        assert result.reason is ka.ConvergenceReason.CONVERGED_ZERO_RHS
        np.testing.assert_array_equal(result.x, 0.0)


def test_single_rank_gradient_matches_serial_and_taylor():
    model = gallery.convection_diffusion_2d(10, 8, peclet=20.0)
    reference = ka.AdjointSolver(model.serial.problem, rtol=1e-12).gradient(model.serial.theta)
    with PetscAdjointSolver(model.problem, rtol=1e-12) as solver:
        result = solver.gradient(model.theta)
        gradient = model.gather_theta(result.gradient)
        error = np.linalg.norm(gradient - reference.gradient) / np.linalg.norm(
            reference.gradient)
        assert error < 1e-8
        assert verify.taylor_test_solver(solver, model.theta, rng=1).passed
    assert verify.operator_dot_test(model.problem, model.theta, rng=0).passed
    assert verify.operator_vjp_test(model.problem, model.theta, rng=0).passed


@pytest.mark.parametrize("build", [
    lambda: gallery.diffusion_2d(8, 6), lambda: gallery.diffusion_3d(4),
    lambda: gallery.convection_diffusion_2d(6, 5, peclet=20.0),
    lambda: gallery.convection_diffusion_2d(6, 5, peclet=20.0, parameters="diffusivity")],
    ids=["diffusion_2d", "diffusion_3d", "convection_both", "convection_diffusivity"])
def test_distributed_gallery_hessian_actions_match_the_serial_models(build):
    model = build()
    v = np.random.default_rng(0).standard_normal(model.serial.n_params)
    serial = ka.AdjointSolver(model.serial.problem, rtol=1e-12)
    expected = serial.hessian_vector_product(model.serial.theta, v).product
    with PetscAdjointSolver(model.problem, rtol=1e-12) as solver:
        result = solver.hessian_vector_product(model.theta, model.local_theta(v))
        product = model.gather_theta(np.asarray(result.product), root=None)
        check = ka.verify.hessian_gradient_test(solver, model.theta, rng=0)
    assert np.linalg.norm(product - expected) <= 1e-8 * np.linalg.norm(expected)
    assert check.passed, check.summary()

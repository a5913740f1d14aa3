"""krylov_adjoint.torch: gradcheck, and gradients against the library and dense algebra.

The gallery's finite-volume diffusion and convection–diffusion operators are written again in
torch here; the primitive's gradients must equal the library's own (AdjointSolver on the
gallery's numpy callbacks) and the dense reference to 1e-8.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import dense_reference, framework, relative_error

import krylov_adjoint as ka
from krylov_adjoint import gallery
from krylov_adjoint.gallery._upwind import upwind_stencil

torch = framework("torch")

import krylov_adjoint.torch as kt  # noqa: E402

RTOL = 1e-12
F64 = torch.float64


def fv_diffusion(shape, scale=1.0):
    """The gallery's −∇·(k∇u), k = scale·exp(θ) per cell (harmonic face means), in torch."""
    spacing = [1.0 / m for m in shape]

    def matvec(theta, x):
        k = scale * torch.exp(theta).reshape(shape)
        u = x.reshape(shape)
        out = torch.zeros(shape, dtype=F64)
        for axis, h in enumerate(spacing):
            m = shape[axis]
            kl, kr = k.narrow(axis, 0, m - 1), k.narrow(axis, 1, m - 1)
            flux = 2 * kl * kr / (kl + kr) / h**2 * (u.narrow(axis, 0, m - 1)
                                                   - u.narrow(axis, 1, m - 1))
            zero = torch.zeros_like(flux.narrow(axis, 0, 1))
            out = out + torch.cat([flux, zero], axis) - torch.cat([zero, flux], axis)
            edge = torch.zeros(m, dtype=F64)
            edge[0] = edge[-1] = 1.0
            edge = edge.reshape([m if a == axis else 1 for a in range(len(shape))])
            out = out + 2 * k / h**2 * edge * u
        return out.reshape(-1)

    return matvec


def convection_matvec(shape, peclet):
    diffusion = fv_diffusion(shape, 1.0 / peclet)
    C = upwind_stencil(shape, "rotating").assemble().tocoo()
    rows, cols, vals = (torch.from_numpy(a) for a in (C.row.astype(np.int64),
                                                      C.col.astype(np.int64), C.data))

    def matvec(theta, x):
        convection = torch.zeros_like(x).index_add(0, rows, vals * x[cols])
        return diffusion(theta, x) + convection

    return matvec, C


def misfit_model(model_fn, *args, **kwargs):
    probe = model_fn(*args, **kwargs)
    d = np.random.default_rng(3).standard_normal(probe.n)
    model = model_fn(*args, objective=ka.LeastSquaresMisfit(None, d), **kwargs)
    return model, lambda x: 0.5 * torch.sum((x - torch.from_numpy(d)) ** 2)


def tensor(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=F64, requires_grad=grad)


@pytest.fixture(autouse=True)
def fresh_cache():
    kt.clear_cache()
    yield
    kt.clear_cache()


def test_matvec_matches_the_gallery():
    model = gallery.diffusion_2d(7, 5)
    x = np.random.default_rng(0).standard_normal(model.n)
    ours = fv_diffusion((7, 5))(tensor(model.theta), tensor(x))
    np.testing.assert_allclose(ours.numpy(), model.problem.matvec(model.theta, x), rtol=1e-13)


def test_gradcheck_reverse_and_forward():
    matvec = fv_diffusion((4, 3))
    theta = tensor(gallery.diffusion_2d(4, 3).theta, grad=True)
    b = tensor(np.linspace(1.0, 2.0, 12), grad=True)

    def f(th, rhs):
        return kt.linear_solve(matvec, th, rhs, structure="spd", rtol=RTOL)

    assert torch.autograd.gradcheck(f, (theta, b), check_forward_ad=True)


def test_gradient_equals_the_library_and_the_dense_reference():
    model, J = misfit_model(gallery.diffusion_2d, 8, 6)
    theta = tensor(model.theta, grad=True)
    x = kt.linear_solve(fv_diffusion((8, 6)), theta, tensor(model.problem.b(model.theta)),
                        structure="spd", rtol=RTOL)
    J(x).backward()
    library = ka.AdjointSolver(model.problem, rtol=RTOL).gradient(model.theta)
    assert relative_error(theta.grad.numpy(), library.gradient) < 1e-8
    assert relative_error(theta.grad.numpy(), dense_reference(model, model.theta).gradient) \
        < 1e-8


def test_rhs_depending_on_theta():
    model, J = misfit_model(gallery.convection_diffusion_2d, 6, 5, peclet=10.0)
    n = model.n
    matvec, _ = convection_matvec((6, 5), 10.0)
    theta = tensor(model.theta, grad=True)
    J(kt.linear_solve(lambda th, x: matvec(th[:n], x), theta, theta[n:], rtol=RTOL)).backward()
    assert relative_error(theta.grad.numpy(), dense_reference(model, model.theta).gradient) \
        < 1e-8


def test_nonsymmetric_adjoint_uses_the_transposed_amg():
    shape, peclet = (24, 24), 100.0
    model, J = misfit_model(gallery.convection_diffusion_2d, *shape, peclet=peclet,
                            parameters="diffusivity")
    matvec, _ = convection_matvec(shape, peclet)
    A = model.problem.assemble(model.theta).tocoo()
    counts: Counter = Counter()

    def monitor(phase, iteration, rnorm):
        counts[phase] = max(counts[phase], iteration)

    # the preconditioner from A(θ₀)'s entries (fixed values: AMG kept across θ anyway)
    theta = tensor(model.theta, grad=True)
    x = kt.linear_solve(matvec, theta, tensor(model.problem.b(model.theta)),
                        values=lambda th: torch.from_numpy(A.data), pattern=(A.row, A.col),
                        rtol=1e-10, monitor=monitor)
    J(x).backward()
    library = ka.AdjointSolver(model.problem, rtol=1e-10).gradient(model.theta)
    assert relative_error(theta.grad.numpy(), library.gradient) < 1e-7
    assert counts["primal"] >= 3
    assert counts["adjoint"] <= counts["primal"] + 2, counts


def test_batched_right_hand_sides():
    model = gallery.diffusion_2d(5, 4)
    A = model.problem.assemble(model.theta).toarray()
    theta = tensor(model.theta, grad=True)
    B = tensor(np.random.default_rng(2).standard_normal((3, model.n)), grad=True)
    X = kt.linear_solve(fv_diffusion((5, 4)), theta, B, structure="spd", rtol=RTOL)
    np.testing.assert_allclose(X.detach().numpy(), np.linalg.solve(A, B.detach().numpy().T).T,
                               rtol=1e-9)
    X.sum().backward()
    np.testing.assert_allclose(B.grad.numpy()[1], np.linalg.solve(A.T, np.ones(model.n)),
                               rtol=1e-9)
    single = tensor(model.theta, grad=True)
    sum(kt.linear_solve(fv_diffusion((5, 4)), single, B[k].detach(), structure="spd",
                        rtol=RTOL).sum() for k in range(3)).backward()
    np.testing.assert_allclose(theta.grad.numpy(), single.grad.numpy(), rtol=1e-9)


def test_operator_passes_the_library_checks():
    model = gallery.diffusion_2d(6, 5)
    op = kt.operator(fv_diffusion((6, 5)), n=model.n)
    problem = ka.AdjointProblem(op, model.problem.rhs, model.problem.objective,
                                n_params=model.n_params)
    report = ka.verify.check_problem(problem, model.theta, rng=0)
    assert report.passed, report.summary()


# -- bad input ---------------------------------------------------------------------------------
def test_float32_is_refused():
    with pytest.raises(ka.InputError, match="b: expected dtype torch.float64, got torch.float32"):
        kt.linear_solve(lambda th, x: th * x, torch.ones(3, dtype=F64), torch.ones(3))


def test_a_matvec_changing_the_shape_is_named():
    with pytest.raises(ka.CallbackError, match=r"matvec: expected an output of shape \(3,\)"):
        kt.linear_solve(lambda th, x: torch.cat([th * x, x]), torch.ones(3, dtype=F64),
                        torch.ones(3, dtype=F64))


def test_a_nonlinear_matvec_fails_the_dot_test():
    with pytest.raises(ka.CallbackError, match="operator.rmatvec"):
        kt.linear_solve(lambda th, x: th * x + x * x, torch.ones(5, dtype=F64),
                        torch.ones(5, dtype=F64))


def test_nonconvergence_raises_in_the_backward_pass():
    def slow(th, x):
        return th * x + torch.roll(x, 1)

    theta = torch.ones(40, dtype=F64, requires_grad=True)
    b = torch.arange(1.0, 41.0, dtype=F64)
    with pytest.raises(ka.ConvergenceError) as info:
        kt.linear_solve(slow, theta, b, maxiter=3, preconditioner=None)
    assert info.value.phase == "primal"
    well_posed = (3 * torch.ones(40, dtype=F64)).requires_grad_(True)  # A = 3I + shift
    x = kt.linear_solve(slow, well_posed, b, maxiter=200, preconditioner=None,
                        adjoint_rtol=1e-300)
    with pytest.raises(ka.ConvergenceError) as info:
        (x * torch.linspace(-1.0, 2.0, 40, dtype=F64)).sum().backward()
    assert info.value.phase == "adjoint"


def test_api_reference_documents_the_torch_package():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.rst").read_text()
    for name in kt.__all__:
        assert f":: krylov_adjoint.torch.{name}\n" in text, name

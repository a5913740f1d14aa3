"""The low-rank Laplace approximation: randomized eigenpairs of ``H v = μ R v`` and the
posterior ``N(θ_MAP, (H + R)⁻¹)`` built on them, against dense numpy/scipy references."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.linalg

from krylov_adjoint.errors import CallbackError, InputError, MissingCallbackError
from krylov_adjoint.uq import LaplacePosterior, columnwise, randomized_eigh

N = 40


def prior_precision(n: int = N) -> np.ndarray:
    """An SPD, non-diagonal R: a shifted 1-D Laplacian (a smoothing prior)."""
    return (np.diag(np.full(n, 2.5)) - np.diag(np.ones(n - 1), 1) - np.diag(np.ones(n - 1), -1))


def hessian(R: np.ndarray, mu: np.ndarray, seed: int = 1) -> np.ndarray:
    """A symmetric H whose generalized eigenvalues against R are exactly ``mu``.

    With ``R = L Lᵀ`` and W orthogonal, ``V = L⁻ᵀ W`` is R-orthonormal and ``H = R V M Vᵀ R``.
    """
    L = np.linalg.cholesky(R)
    W, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((R.shape[0],) * 2))
    LW = L @ W
    H = LW @ np.diag(mu) @ LW.T
    return 0.5 * (H + H.T)


def decaying(n: int = N, rate: float = 0.4) -> np.ndarray:
    return 1e3 * rate ** np.arange(n)


def maps(H: np.ndarray, R: np.ndarray):
    Rc = scipy.linalg.cho_factor(R)
    return (lambda X: H @ X, lambda X: R @ X, lambda X: scipy.linalg.cho_solve(Rc, X))


def dense_pairs(H: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, V = scipy.linalg.eigh(H, R)
    return mu[::-1], V[:, ::-1]


# -- randomized_eigh ------------------------------------------------------------------------
def test_eigenvalues_match_the_dense_generalized_problem():
    R = prior_precision()
    H = hessian(R, decaying())
    result = randomized_eigh(*maps(H, R), 6, n_local=N, rng=3)
    reference = dense_pairs(H, R)[0][:6]
    assert result.eigenvalues.shape == (6,)
    np.testing.assert_allclose(result.eigenvalues, reference, rtol=1e-6)
    assert np.all(np.diff(result.eigenvalues) < 0)


def test_eigenvectors_are_r_orthonormal_and_span_the_dense_ones():
    R = prior_precision()
    H = hessian(R, decaying())
    V = randomized_eigh(*maps(H, R), 6, n_local=N, rng=4).eigenvectors
    np.testing.assert_allclose(V.T @ R @ V, np.eye(6), rtol=0, atol=1e-10)
    V_ref = dense_pairs(H, R)[1][:, :6]
    # each vector equals the dense one up to its sign: |v_refᵀ R v| = 1
    np.testing.assert_allclose(np.abs(np.sum(V_ref * (R @ V), axis=0)), 1.0, atol=1e-6)


def test_reported_residuals_are_the_true_ones_and_flag_a_flat_spectrum():
    R = prior_precision()
    for mu, p, small in ((decaying(), 10, True), (np.linspace(2.0, 1.0, N), 2, False)):
        H = hessian(R, mu)
        result = randomized_eigh(*maps(H, R), 4, n_local=N, oversampling=p, rng=5)
        V, m = result.eigenvectors, result.eigenvalues
        direct = (np.linalg.norm(H @ V - (R @ V) * m, axis=0)
                  / (m * np.linalg.norm(R @ V, axis=0)))
        np.testing.assert_allclose(result.residuals, direct, rtol=1e-6, atol=1e-14)
        assert (result.max_residual < 1e-3) is small


def test_a_block_apply_h_is_called_with_whole_blocks():
    R = prior_precision()
    H = hessian(R, decaying())
    shapes = []

    def apply_h(X):
        shapes.append(X.shape)
        return H @ X

    _, apply_r, solve_r = maps(H, R)
    result = randomized_eigh(apply_h, apply_r, solve_r, 5, n_local=N, oversampling=7, rng=0)
    assert shapes == [(N, 12), (N, 12)]
    assert result.n_apply_H == 24 and result.basis_size == 12
    assert result.n_apply_R == 12 and result.n_solve_R == 12


def test_a_map_of_single_vectors_is_applied_column_by_column():
    R = prior_precision()
    H = hessian(R, decaying())
    calls = []

    def hvp(v):
        assert v.shape == (N,)
        calls.append(1)
        return H @ v

    _, apply_r, solve_r = maps(H, R)
    by_vector = randomized_eigh(columnwise(hvp), apply_r, solve_r, 5, n_local=N, rng=2)
    by_block = randomized_eigh(*maps(H, R), 5, n_local=N, rng=2)
    assert len(calls) == by_vector.n_apply_H == 30
    np.testing.assert_allclose(by_vector.eigenvalues, by_block.eigenvalues, rtol=1e-12)


def test_a_low_rank_hessian_gives_its_rank_of_pairs():
    R = prior_precision()
    mu = np.zeros(N)
    mu[:3] = [9.0, 4.0, 1.0]
    H = hessian(R, mu)
    result = randomized_eigh(*maps(H, R), 5, n_local=N, rng=1)
    assert result.basis_size == 3 and result.k == 3
    np.testing.assert_allclose(result.eigenvalues, [9.0, 4.0, 1.0], rtol=1e-10)


def test_the_same_rng_gives_the_same_pairs_and_none_gives_fresh_ones():
    R = prior_precision()
    H = hessian(R, np.linspace(2.0, 1.0, N))
    a, b, c = (randomized_eigh(*maps(H, R), 3, n_local=N, oversampling=1, rng=rng)
               for rng in (7, 7, None))
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    assert not np.array_equal(a.eigenvalues, c.eigenvalues)


def test_bad_inputs_and_callbacks_are_named():
    R = prior_precision()
    H = hessian(R, decaying())
    apply_h, apply_r, solve_r = maps(H, R)
    with pytest.raises(InputError, match="k: asks for 41"):
        randomized_eigh(apply_h, apply_r, solve_r, N + 1, n_local=N)
    with pytest.raises(InputError, match="n_local"):
        randomized_eigh(apply_h, apply_r, solve_r, 2)
    with pytest.raises(CallbackError, match=r"apply_H: expected shape \(40, 12\)"):
        randomized_eigh(lambda X: X[:, 0], apply_r, solve_r, 2, n_local=N)
    with pytest.raises(CallbackError, match="solve_R: raised ValueError.*columnwise"):
        randomized_eigh(apply_h, apply_r, lambda v: np.linalg.solve(R, v.reshape(1, -1)),
                        2, n_local=N)


# -- two ranks, simulated by two threads ----------------------------------------------------
class TwoRanks:
    """Two threads acting as two MPI ranks: rows ``[0, half)`` and ``[half, n)``."""

    def __init__(self, n: int) -> None:
        self.rows = (slice(0, n // 2), slice(n // 2, n))
        self.barrier = threading.Barrier(2, timeout=60)
        self.parts: list = [None, None]

    def exchange(self, rank: int, local: np.ndarray) -> list:
        self.parts[rank] = np.array(local, copy=True)
        self.barrier.wait()
        parts = list(self.parts)
        self.barrier.wait()
        return parts

    def reduce_sum(self, rank: int):
        return lambda local: sum(self.exchange(rank, local))  # same order on both ranks

    def local_map(self, rank: int, apply):
        """A global map on this rank's rows: gather the block, apply, keep the rows."""
        return lambda X: apply(np.vstack(self.exchange(rank, X)))[self.rows[rank]]

    def run(self, task):
        with ThreadPoolExecutor(2) as pool:
            return [f.result() for f in [pool.submit(task, r) for r in (0, 1)]]


def distributed_eigh(H, R, k, **kwargs):
    world = TwoRanks(N)
    apply_h, apply_r, solve_r = maps(H, R)
    omega = kwargs.pop("omega", None)
    seeds = kwargs.pop("seeds", (None, None))

    def rank(r):
        mine = {} if omega is None else {"omega": omega[world.rows[r]]}
        return randomized_eigh(world.local_map(r, apply_h), world.local_map(r, apply_r),
                               world.local_map(r, solve_r), k, n_local=N // 2,
                               rng=seeds[r],
                               reduce_sum=world.reduce_sum(r), **mine, **kwargs)

    return world, world.run(rank)


def test_two_ranks_with_the_rows_of_one_omega_give_the_serial_pairs():
    R = prior_precision()
    H = hessian(R, decaying())
    omega = np.random.default_rng(8).standard_normal((N, 16))
    serial = randomized_eigh(*maps(H, R), 6, omega=omega)
    world, ranks = distributed_eigh(H, R, 6, omega=omega)
    for result in ranks:
        np.testing.assert_allclose(result.eigenvalues, serial.eigenvalues, rtol=1e-10)
        np.testing.assert_allclose(result.residuals, serial.residuals, rtol=1e-6, atol=1e-15)
    V = np.vstack([ranks[0].eigenvectors, ranks[1].eigenvectors])
    np.testing.assert_allclose(V, serial.eigenvectors, atol=1e-10)
    np.testing.assert_allclose(V.T @ R @ V, np.eye(6), atol=1e-10)


def test_two_ranks_with_their_own_streams_find_the_dense_pairs():
    R = prior_precision()
    H = hessian(R, decaying())
    _, ranks = distributed_eigh(H, R, 6, seeds=(np.random.default_rng([11, 0]),
                                                np.random.default_rng([11, 1])))
    reference = dense_pairs(H, R)[0][:6]
    for result in ranks:
        np.testing.assert_allclose(result.eigenvalues, reference, rtol=1e-6)
        assert result.n_apply_H == 16 + result.basis_size  # this rank's rows of the blocks
    np.testing.assert_array_equal(ranks[0].eigenvalues, ranks[1].eigenvalues)


def test_uq_is_a_package_attribute_imported_on_first_use():
    code = ("import sys\nimport krylov_adjoint as ka\n"
            "before = 'krylov_adjoint.uq' in sys.modules\n"
            "print(before, ka.uq.randomized_eigh.__module__, 'uq' in ka.__all__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "krylov_adjoint.uq._eigen", "True"]



# -- LaplacePosterior ------------------------------------------------------------------------
THETA_MAP = np.linspace(-1.0, 1.0, N)


def posterior(H, R, k, rng=0, **options):
    apply_h, apply_r, solve_r = maps(H, R)
    pairs = randomized_eigh(apply_h, apply_r, solve_r, k, n_local=N, rng=rng)
    options.setdefault("apply_R", apply_r)
    return LaplacePosterior.from_eigh(THETA_MAP, pairs, solve_r, **options)


def moderate(n: int = N) -> np.ndarray:
    return np.logspace(2, -1, n)


def test_full_rank_covariance_is_the_inverse_of_h_plus_r():
    R = prior_precision()
    H = hessian(R, moderate())
    post = posterior(H, R, N)
    exact = np.linalg.inv(H + R)
    assert post.rank == N
    np.testing.assert_allclose(post.apply_covariance(np.eye(N)), exact, rtol=0,
                               atol=1e-8 * np.abs(exact).max())
    v = np.arange(N, dtype=float)
    np.testing.assert_allclose(post.apply_covariance(v), exact @ v, rtol=1e-8)


def test_low_rank_covariance_error_decreases_with_k():
    R = prior_precision()
    H = hessian(R, decaying())
    exact = np.linalg.inv(H + R)
    errors = [np.linalg.norm(posterior(H, R, k).apply_covariance(np.eye(N)) - exact)
              for k in (1, 2, 4, 8, 16)]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-3 * errors[0], errors


def test_full_rank_pointwise_variance_is_the_diagonal_of_the_posterior():
    R = prior_precision()
    H = hessian(R, moderate())
    post = posterior(H, R, N, prior_variance=np.diag(np.linalg.inv(R)))
    np.testing.assert_allclose(post.pointwise_variance(), np.diag(np.linalg.inv(H + R)),
                               rtol=1e-8)


def test_probed_prior_variance_is_exact_for_a_diagonal_prior_and_close_otherwise():
    R = np.diag(np.linspace(1.0, 3.0, N))
    H = hessian(R, moderate())
    np.testing.assert_allclose(posterior(H, R, N).pointwise_variance(n_probes=3, rng=0),
                               np.diag(np.linalg.inv(H + R)), rtol=1e-8)
    R = prior_precision()
    H = hessian(R, decaying())
    post = posterior(H, R, 12)
    reference = np.diag(np.linalg.inv(R)) - (post.eigenvectors**2) @ post.weights
    few = post.pointwise_variance(n_probes=4, rng=1)
    many = post.pointwise_variance(n_probes=4000, rng=1)
    assert np.max(np.abs(many / reference - 1)) < 0.05
    assert np.max(np.abs(few / reference - 1)) > 0.05  # probing, not the exact diagonal


def test_samples_have_the_posterior_covariance():
    R = prior_precision()
    H = hessian(R, moderate())
    L = np.linalg.cholesky(R)
    post = posterior(H, R, N, prior_sqrt=lambda Z: scipy.linalg.solve_triangular(L.T, Z))
    X = post.sample(rng=12, n=40000)
    assert X.shape == (N, 40000)
    exact = np.linalg.inv(H + R)
    scale = np.linalg.norm(exact)
    np.testing.assert_allclose(X.mean(axis=1), THETA_MAP, atol=0.02 * np.sqrt(exact.max()))
    assert np.linalg.norm(np.cov(X) - exact) < 0.03 * scale
    assert np.linalg.norm(np.linalg.inv(R) - exact) > 0.3 * scale  # the prior would fail


def test_low_rank_samples_have_the_low_rank_covariance_from_either_prior_hook():
    R = prior_precision()
    H = hessian(R, decaying())
    L = np.linalg.cholesky(R)
    draw = lambda rng: scipy.linalg.solve_triangular(L.T, rng.standard_normal(N))  # noqa: E731
    post = posterior(H, R, 3, prior_sample=draw)
    low_rank = post.apply_covariance(np.eye(N))
    X = post.sample(rng=5, n=30000)
    assert np.linalg.norm(np.cov(X) - low_rank) < 0.03 * np.linalg.norm(low_rank)
    # along the R vᵢ the posterior variance is 1/(1+μᵢ) of the prior's (1): a sharp check
    projected = np.cov(post.eigenvectors.T @ R @ X)
    np.testing.assert_allclose(np.diag(projected), 1 / (1 + post.eigenvalues), rtol=0.04)
    np.testing.assert_array_equal(post.sample(rng=5, n=3), post.sample(rng=5, n=3))


def test_eigenvalues_above_a_threshold():
    R = prior_precision()
    H = hessian(R, decaying())
    post = posterior(H, R, 10)
    mu = decaying()[:10]
    np.testing.assert_allclose(post.eigenvalues_above(), mu[mu > 1], rtol=1e-6)
    assert post.eigenvalues_above(100.0).size == np.sum(mu > 100)
    np.testing.assert_allclose(post.weights, mu / (1 + mu), rtol=1e-6)


def test_posterior_inputs_and_missing_hooks_are_named():
    R = prior_precision()
    H = hessian(R, decaying())
    _, apply_r, solve_r = maps(H, R)
    V = np.zeros((N, 2))
    with pytest.raises(InputError, match="eigenvalues: must be > -1"):
        LaplacePosterior(THETA_MAP, [1.0, -1.0], V, solve_r)
    with pytest.raises(InputError, match=r"eigenvectors: expected shape \(40, 2\)"):
        LaplacePosterior(THETA_MAP, [1.0, 0.5], V.T, solve_r)
    post = LaplacePosterior(THETA_MAP, [1.0, 0.5], V, solve_r)
    with pytest.raises(MissingCallbackError, match="apply_R"):
        post.sample(rng=0)
    post = LaplacePosterior(THETA_MAP, [1.0, 0.5], V, solve_r, apply_R=apply_r)
    with pytest.raises(MissingCallbackError, match="prior_sample"):
        post.sample(rng=0)
    with pytest.raises(InputError, match="v: expected shape"):
        post.apply_covariance(np.ones(N + 1))
    with pytest.raises(InputError, match="n: must be positive"):
        post.sample(rng=0, n=0)
    post = LaplacePosterior(THETA_MAP, [1.0, 0.5], V, solve_r, apply_R=apply_r,
                            prior_sample=lambda rng: rng.standard_normal(N - 1))
    with pytest.raises(CallbackError, match=r"prior_sample: expected shape \(40,\)"):
        post.sample(rng=0)


def test_callbacks_get_read_only_blocks_and_inputs_are_not_modified():
    R = prior_precision()
    H = hessian(R, decaying())
    apply_h, apply_r, solve_r = maps(H, R)

    def in_place(X):
        X *= 2.0
        return X

    omega = np.random.default_rng(0).standard_normal((N, 12))
    before = omega.copy()
    pairs = randomized_eigh(apply_h, apply_r, solve_r, 2, omega=omega)
    np.testing.assert_array_equal(omega, before)
    with pytest.raises(CallbackError, match="apply_H: raised ValueError"):
        randomized_eigh(in_place, apply_r, solve_r, 2, omega=omega)
    theta, v = THETA_MAP.copy(), np.ones(N)
    post = LaplacePosterior.from_eigh(theta, pairs, solve_r)
    post.apply_covariance(v)
    np.testing.assert_array_equal(theta, THETA_MAP)
    np.testing.assert_array_equal(v, np.ones(N))
    assert not post.mean.flags.writeable and not post.eigenvectors.flags.writeable


def test_two_ranks_give_the_serial_covariance_and_variance():
    R = prior_precision()
    H = hessian(R, decaying())
    omega = np.random.default_rng(8).standard_normal((N, 16))
    serial_pairs = randomized_eigh(*maps(H, R), 6, omega=omega)
    _, solve_r = maps(H, R)[1:]
    serial = LaplacePosterior.from_eigh(THETA_MAP, serial_pairs, solve_r,
                                        prior_variance=np.diag(np.linalg.inv(R)))
    world, ranks = distributed_eigh(H, R, 6, omega=omega)
    world = TwoRanks(N)
    block = np.random.default_rng(3).standard_normal((N, 4))

    def rank(r):
        rows = world.rows[r]
        post = LaplacePosterior.from_eigh(THETA_MAP[rows], ranks[r],
                                          world.local_map(r, solve_r),
                                          prior_variance=np.diag(np.linalg.inv(R))[rows],
                                          reduce_sum=world.reduce_sum(r))
        return post.apply_covariance(block[rows]), post.pointwise_variance()

    (c0, v0), (c1, v1) = world.run(rank)
    np.testing.assert_allclose(np.vstack([c0, c1]), serial.apply_covariance(block),
                               rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np.concatenate([v0, v1]), serial.pointwise_variance(),
                               rtol=1e-9)

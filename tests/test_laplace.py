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

from krylov_adjoint.errors import CallbackError, InputError
from krylov_adjoint.uq import columnwise, randomized_eigh

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

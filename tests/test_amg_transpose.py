"""Exactness of the transposed AMG cycle of AMGPreconditioner.

For every supported configuration (method x cycle x smoothers x symmetric/nonsymmetric A):

1. the dot test  |<Mu, v> - <u, Mᵀv>| <= 1e-12 ‖Mu‖ ‖v‖;
2. M and Mᵀ assembled column by column satisfy Mᵀ_assembled == M_assembled.T;
3. ``apply`` is the map pyamg's ``aspreconditioner(cycle)`` applies on the same hierarchy.

The test of the test: using ``apply`` in place of ``apply_transpose`` fails the dot test.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from pyamg.gallery import linear_elasticity, poisson

from krylov_adjoint.gallery import convection_diffusion_2d
from krylov_adjoint.precond.amg import AMGPreconditioner
from krylov_adjoint.precond.base import TransposedPreconditioner
from krylov_adjoint.verify import dot_test

DOT_RTOL = 1e-12


def convection_diffusion(m: int, peclet: float) -> sp.csr_array:
    """The gallery's upwind convection-diffusion matrix on an m x m grid (uniform wind)."""
    model = convection_diffusion_2d(m, peclet=peclet, velocity="constant",
                                    parameters="diffusivity")
    return sp.csr_array(model.problem.operator.assemble(model.theta))


@functools.cache
def matrix(name: str, m: int) -> sp.csr_array:
    if name == "poisson":
        return sp.csr_array(poisson((m, m), format="csr"))
    return convection_diffusion(m, {"cd-pe10": 10.0, "cd-pe100": 100.0}[name])


MATRICES = ["poisson", "cd-pe10", "cd-pe100"]
METHODS = ["sa", "rs", "air"]
CYCLES = ["V", "W", "F"]

GS_SYM = ("gauss_seidel", {"sweep": "symmetric"})
SMOOTHERS: dict[str, tuple[object, object]] = {
    "default": (None, None),
    "gs-forward/backward": (("gauss_seidel", {"sweep": "forward"}),
                            ("gauss_seidel", {"sweep": "backward"})),
    "gs-forward-x2/forward": (("gauss_seidel", {"sweep": "forward", "iterations": 2}),
                              ("gauss_seidel", {"sweep": "forward"})),
    "gs-symmetric-x2": (("gauss_seidel", {"sweep": "symmetric", "iterations": 2}),) * 2,
    "sor-forward/symmetric": (("sor", {"omega": 0.8, "sweep": "forward", "iterations": 2}),
                              ("sor", {"omega": 1.2, "sweep": "symmetric"})),
    "jacobi": (("jacobi", {"omega": 2.0 / 3.0, "iterations": 2}),
               ("jacobi", {"omega": 0.5, "withrho": False})),
    "richardson": (("richardson", {"omega": 0.7, "iterations": 2}), ("richardson", {})),
    "chebyshev": (("chebyshev", {"degree": 3}), ("chebyshev", {"degree": 2, "iterations": 2})),
    "block-gs/block-jacobi": (("block_gauss_seidel", {"sweep": "forward"}),
                              ("block_jacobi", {"omega": 0.6})),
    "none/gs": ("none", ("gauss_seidel", {"sweep": "backward", "iterations": 2})),
    "per-level-list": ([GS_SYM, ("jacobi", {"omega": 0.6}), ("sor", {"omega": 1.1})],
                       [("gauss_seidel", {"sweep": "forward"}), ("chebyshev", {})]),
    "gs-ne/gs-nr": (("gauss_seidel_ne", {"sweep": "forward", "omega": 0.9}),
                    ("gauss_seidel_nr", {"sweep": "symmetric"})),
    "jacobi-ne/gs-nr": (("jacobi_ne", {"iterations": 2}),
                        ("gauss_seidel_nr", {"sweep": "backward", "iterations": 2})),
    "cf/fc-jacobi": (("cf_jacobi", {"f_iterations": 2, "c_iterations": 1, "omega": 0.9}),
                     ("fc_jacobi", {"iterations": 2, "withrho": True})),
}

CASES = [
    pytest.param(method, cycle, smoother, name, id=f"{method}-{cycle}-{smoother}-{name}")
    for method in METHODS
    for smoother in SMOOTHERS
    if not (method == "sa" and smoother.startswith("cf"))
    for cycle in CYCLES
    for name in MATRICES
]
# Assembling M and Mᵀ costs 2n cycles: every cycle with the default smoothers, and every
# smoother with the F-cycle (the one whose coarse visits change order) on a nonsymmetric A.
ASSEMBLED_CASES = [
    case for case in CASES
    if case.values[2] == "default" or (case.values[1] == "F" and case.values[3] == "cd-pe100")
]
GRID = 10  # n = 100 unknowns


@functools.cache
def build(method: str, cycle: str, smoother: str, name: str) -> AMGPreconditioner:
    pre, post = SMOOTHERS[smoother]
    # A small max_coarse gives 4-5 levels, so W- and F-cycles differ from V-cycles.
    return AMGPreconditioner(matrix(name, GRID), method=method, cycle=cycle, presmoother=pre,
                             postsmoother=post, max_coarse=4)


def dot_error(apply, apply_transpose, n: int, seed: int = 0) -> float:
    """The worst normalised dot-test error of ``apply_transpose`` against ``apply`` (3 pairs)."""
    return dot_test(apply, apply_transpose, (n, n), rng=seed, trials=3).error


@pytest.mark.parametrize(("method", "cycle", "smoother", "name"), CASES)
def test_dot_product(method: str, cycle: str, smoother: str, name: str) -> None:
    M = build(method, cycle, smoother, name)
    assert M.levels >= 3
    assert dot_error(M.apply, M.apply_transpose, M.shape[0]) <= DOT_RTOL


@pytest.mark.parametrize(("method", "cycle", "smoother", "name"), CASES)
def test_apply_matches_pyamg(method: str, cycle: str, smoother: str, name: str) -> None:
    M = build(method, cycle, smoother, name)
    reference = M.hierarchy.aspreconditioner(cycle=cycle)
    rng = np.random.default_rng(1)
    for _ in range(2):
        r = rng.standard_normal(M.shape[0])
        expected = reference @ r
        assert np.linalg.norm(M.apply(r) - expected) <= 1e-13 * np.linalg.norm(expected)


@pytest.mark.parametrize(("method", "cycle", "smoother", "name"), ASSEMBLED_CASES)
def test_assembled_transpose(method: str, cycle: str, smoother: str, name: str) -> None:
    M = build(method, cycle, smoother, name)
    eye = np.eye(M.shape[0])
    M_full, MT_full = M.apply(eye), M.apply_transpose(eye)
    assert M_full.shape[0] <= 150
    assert np.abs(MT_full - M_full.T).max() <= 1e-12 * np.abs(M_full).max()


@pytest.mark.parametrize("cycle", CYCLES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", MATRICES)
def test_dot_product_20x20(name: str, method: str, cycle: str) -> None:
    A = matrix(name, 20)
    M = AMGPreconditioner(A, method=method, cycle=cycle)
    assert M.symmetric == (name == "poisson")
    assert dot_error(M.apply, M.apply_transpose, A.shape[0], seed=3) <= DOT_RTOL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["cd-pe10", "cd-pe100"])
def test_apply_in_place_of_transpose_fails_the_dot_test(name: str, method: str) -> None:
    """The dot test discriminates: M is not symmetric, and M.apply is not Mᵀ."""
    M = AMGPreconditioner(matrix(name, 20), method=method)
    n = M.shape[0]
    assert dot_error(M.apply, M.apply_transpose, n) <= DOT_RTOL
    assert dot_error(M.apply, M.apply, n) > 1e-4


def test_f_cycle_is_not_symmetric_even_for_symmetric_a() -> None:
    """pyamg's F-cycle visits the coarse level "F then V": Mᵀ differs from M for SPD A."""
    M = build("rs", "F", "default", "poisson")
    eye = np.eye(M.shape[0])
    M_full, MT_full = M.apply(eye), M.apply_transpose(eye)
    assert M.levels >= 4
    assert np.abs(M_full - M_full.T).max() > 1e-8 * np.abs(M_full).max()
    assert np.abs(MT_full - M_full.T).max() <= 1e-12 * np.abs(M_full).max()


# --------------------------------------------------------------------------- coarse solvers
@pytest.mark.parametrize("coarse", ["pinv", "lu", "splu", "cholesky", "none",
                                    ("gauss_seidel", {"sweep": "forward", "iterations": 3}),
                                    ("jacobi", {"omega": 0.5})],
                         ids=["pinv", "lu", "splu", "cholesky", "none", "gauss-seidel",
                              "jacobi"])
@pytest.mark.parametrize("name", ["poisson", "cd-pe100"])
def test_coarse_solvers(name: str, coarse: object) -> None:
    if coarse == "cholesky" and name != "poisson":
        pytest.skip("Cholesky needs a symmetric positive definite coarse matrix")
    M = AMGPreconditioner(matrix(name, GRID), method="rs", cycle="W", coarse_solver=coarse,
                          max_coarse=20)
    n = M.shape[0]
    M_full, MT_full = M.apply(np.eye(n)), M.apply_transpose(np.eye(n))
    assert np.abs(MT_full - M_full.T).max() <= 1e-12 * np.abs(M_full).max()
    expected = M.hierarchy.aspreconditioner(cycle="W") @ np.eye(n)
    assert np.abs(M_full - expected).max() <= 1e-13 * np.abs(expected).max()


def test_single_level_hierarchy_is_the_coarse_solve() -> None:
    A = convection_diffusion(3, 50.0)  # 9 unknowns: below max_coarse, one level
    M = AMGPreconditioner(A, method="sa")
    assert M.levels == 1
    inverse = np.linalg.pinv(A.toarray())
    eye = np.eye(9)
    assert np.allclose(M.apply(eye), inverse, rtol=0, atol=1e-12 * np.abs(inverse).max())
    assert np.allclose(M.apply_transpose(eye), inverse.T, rtol=0,
                       atol=1e-12 * np.abs(inverse).max())


# --------------------------------------------------------------------- near-nullspace, blocks
@pytest.mark.parametrize("smoother", [None, ("block_gauss_seidel", {"sweep": "forward"}),
                                      ("block_jacobi", {"omega": 0.5, "iterations": 2})],
                         ids=["default", "block-gs", "block-jacobi"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "nonsymmetric"])
def test_elasticity_with_rigid_body_modes(symmetric: bool, smoother: object) -> None:
    A, B = linear_elasticity((8, 8))
    if not symmetric:
        A = A + sp.diags_array(np.linspace(0.1, 1.0, A.shape[0] - 1), offsets=1)
    M = AMGPreconditioner(A, near_nullspace=B, presmoother=smoother, cycle="W",
                          max_coarse=5)
    assert M.symmetric is symmetric
    assert any(level.A.format == "bsr" and level.A.blocksize == (3, 3)
               for level in M.hierarchy.levels)
    n = M.shape[0]
    M_full, MT_full = M.apply(np.eye(n)), M.apply_transpose(np.eye(n))
    assert np.abs(MT_full - M_full.T).max() <= 1e-12 * np.abs(M_full).max()
    expected = M.hierarchy.aspreconditioner(cycle="W") @ np.eye(n)
    assert np.abs(M_full - expected).max() <= 1e-13 * np.abs(expected).max()


def test_block_smoother_with_singular_diagonal_blocks_is_refused() -> None:
    A = poisson((12, 12), format="csr")
    index = np.arange(A.shape[0], dtype=float)
    B = np.column_stack([np.ones_like(index), index, np.sin(index)])
    with pytest.raises(ValueError, match="singular"):
        AMGPreconditioner(A, near_nullspace=B, presmoother=("block_gauss_seidel", {}),
                          max_coarse=10)
    # the default point smoother has an exact transpose on the same hierarchy
    M = AMGPreconditioner(A, near_nullspace=B, max_coarse=10)
    assert dot_error(M.apply, M.apply_transpose, M.shape[0]) <= DOT_RTOL


# ------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("smoother", ["cg", "gmres", "cgnr", "schwarz",
                                      "strength_based_schwarz", "cf_block_jacobi",
                                      "fc_block_jacobi", "no_such_smoother"])
@pytest.mark.parametrize("role", ["presmoother", "postsmoother"])
def test_unsupported_smoother_is_refused(role: str, smoother: str) -> None:
    with pytest.raises(ValueError, match=smoother) as info:
        AMGPreconditioner(matrix("poisson", GRID), **{role: (smoother, {})})
    message = str(info.value)
    assert role in message
    assert "gauss_seidel" in message and "chebyshev" in message  # lists the supported ones


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"presmoother": ("gauss_seidel", {"omega": 1.5})}, "omega"),
    ({"presmoother": ("gauss_seidel", {"sweep": "sideways"})}, "sweep"),
    ({"presmoother": ("jacobi", {"iterations": -1})}, "iterations"),
    ({"postsmoother": [("jacobi", {}), ("cg", {})]}, r"postsmoother\[1\]"),
    ({"postsmoother": []}, "empty"),
    ({"presmoother": ("cf_jacobi", {})}, "C/F splitting"),
    ({"coarse_solver": "gmres"}, "coarse_solver"),
    ({"coarse_solver": lambda A, b: b}, "coarse_solver"),
    ({"cycle": "AMLI"}, "AMLI"),
    ({"cycle": "X"}, "cycle"),
    ({"method": "gamg"}, "method"),
    ({"method": "rs", "near_nullspace": np.ones(100)}, "near_nullspace"),
    ({"near_nullspace": np.ones((10, 1))}, "near_nullspace"),
    ({"B": np.ones((100, 1))}, "near_nullspace"),
], ids=["gs-omega", "bad-sweep", "negative-iterations", "list-entry", "empty-list",
        "cf-with-sa", "krylov-coarse", "callable-coarse", "amli", "unknown-cycle",
        "unknown-method", "nullspace-with-rs", "nullspace-shape", "pyamg-B"])
def test_bad_options_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AMGPreconditioner(matrix("poisson", GRID), **kwargs)


@pytest.mark.parametrize(("A", "error", "match"), [
    (sp.random_array((5, 6), density=0.5, random_state=0), ValueError, "square"),
    (sp.csr_array((0, 0)), ValueError, "empty"),
    (sp.diags_array([1.0, np.nan, 1.0]), ValueError, "non-finite"),
    (sp.diags_array([1.0, np.inf, 1.0]), ValueError, "non-finite"),
    ([[1.0, 0.0], [0.0, 1.0]], TypeError, "scipy.sparse"),
    (np.ones(3), ValueError, "2-D"),
], ids=["nonsquare", "empty", "nan", "inf", "list", "vector"])
def test_bad_matrix_is_refused(A: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        AMGPreconditioner(A)


def test_bad_vector_is_refused() -> None:
    M = build("sa", "V", "default", "poisson")
    with pytest.raises(ValueError, match="length 100"):
        M.apply(np.ones(143))
    with pytest.raises(ValueError, match="length 100"):
        M.apply_transpose(np.ones((2, 100)))
    with pytest.raises(ValueError, match="complex vectors for a real matrix"):
        M.apply(np.ones(100, dtype=complex))


# ------------------------------------------------------------------------------- interface
def test_attributes_and_views() -> None:
    A = matrix("cd-pe10", GRID)
    M = AMGPreconditioner(A, method="air", cycle="w")
    assert M.cycle == "W" and M.method == "air" and M.shape == (100, 100)
    assert M.levels == len(M.hierarchy.levels) >= 2
    assert M.operator_complexity >= 1.0
    assert M.setup_seconds > 0.0
    assert M.symmetric is False
    text = M.describe()
    assert "air" in text and "W-cycle" in text and "nonsymmetric" in text
    assert "AMGPreconditioner" in repr(M)
    rng = np.random.default_rng(5)
    r = rng.standard_normal(100)
    assert isinstance(M.T, TransposedPreconditioner)
    assert np.array_equal(M.T.apply(r), M.apply_transpose(r))
    op = M.aslinearoperator()
    assert np.array_equal(op.matvec(r), M.apply(r))
    assert np.array_equal(op.rmatvec(r), M.apply_transpose(r))


def test_transposed_levels_are_formed_once() -> None:
    M = AMGPreconditioner(matrix("cd-pe100", GRID), method="rs")
    assert M.transpose_setup_seconds is None
    r = np.ones(100)
    first = M.apply_transpose(r)
    engine, seconds = M._transposed, M.transpose_setup_seconds
    assert seconds is not None
    second = M.apply_transpose(r)
    assert M._transposed is engine and M.transpose_setup_seconds == seconds
    assert np.array_equal(first, second)
    M2 = AMGPreconditioner(matrix("cd-pe100", GRID), method="rs")
    M2.prepare_transpose()
    assert M2.transpose_setup_seconds is not None


def test_blocks_of_vectors_and_inputs_untouched() -> None:
    M = build("rs", "V", "default", "cd-pe10")
    rng = np.random.default_rng(7)
    R = rng.standard_normal((100, 3))
    R_copy = R.copy()
    out, out_T = M.apply(R), M.apply_transpose(R)
    assert np.array_equal(R, R_copy)
    for j in range(3):
        assert np.array_equal(out[:, j], M.apply(R[:, j]))
        assert np.array_equal(out_T[:, j], M.apply_transpose(R[:, j]))
    ints = np.arange(100)
    assert np.array_equal(M.apply(ints), M.apply(ints.astype(float)))


def test_symmetric_override_and_input_matrix_untouched() -> None:
    A = matrix("poisson", GRID).copy()
    data = A.data.copy()
    M = AMGPreconditioner(A, symmetric=False)  # pyamg's nonsymmetric smoothed aggregation
    assert M.symmetric is False
    assert np.array_equal(A.data, data)
    assert dot_error(M.apply, M.apply_transpose, 100) <= DOT_RTOL
    assert M.hierarchy.levels[0].A is not A


def test_transposed_levels_reuse_what_is_already_transposed() -> None:
    """Exactly symmetric A is not copied, and Rᵀ is P itself when R == Pᵀ (Galerkin)."""
    M = AMGPreconditioner(matrix("poisson", GRID), method="sa")
    M.prepare_transpose()
    forward, transposed = M._forward.levels, M._transposed.levels
    assert transposed[0].A is forward[0].A
    assert all(t.interpolate is f.interpolate for t, f in zip(transposed[:-1], forward[:-1],
                                                                strict=True))
    N = AMGPreconditioner(matrix("cd-pe10", GRID), method="air")
    N.prepare_transpose()
    assert N._transposed.levels[0].A is not N._forward.levels[0].A
    assert N._transposed.levels[0].interpolate is not N._forward.levels[0].interpolate
    assert dot_error(N.apply, N.apply_transpose, N.shape[0]) <= DOT_RTOL


REFRESH_CASES = [
    pytest.param(method, smoother, name, id=f"{method}-{smoother}-{name}")
    for method in METHODS
    for smoother in ("default", "jacobi", "chebyshev", "block-gs/block-jacobi", "cf/fc-jacobi")
    if not (method == "sa" and smoother.startswith("cf"))
    for name in ("poisson", "cd-pe100")
]


def _perturbed(A: sp.csr_array, seed: int) -> sp.csr_array:
    """A with its values changed and its pattern kept: each entry scaled by 1 ± 0.3."""
    rng = np.random.default_rng(seed)
    B = A.copy()
    B.data = B.data * (1.0 + 0.3 * rng.uniform(-1.0, 1.0, B.data.size))
    return B


@pytest.mark.parametrize(("method", "smoother", "name"), REFRESH_CASES)
def test_a_refreshed_hierarchy_is_the_galerkin_one_with_the_same_interpolation(
        method: str, smoother: str, name: str) -> None:
    M = build(method, "V", smoother, name)
    A = _perturbed(matrix(name, GRID), 3)
    new = M.refreshed(A)
    coarse = A.toarray()
    for old, level, following in zip(M.hierarchy.levels[:-1], new.hierarchy.levels[:-1],
                                     new.hierarchy.levels[1:], strict=True):
        assert level.P is old.P and level.R is old.R            # the interpolation is kept
        assert np.abs(level.A.toarray() - coarse).max() <= 1e-12 * np.abs(coarse).max()
        coarse = old.R.toarray() @ coarse @ old.P.toarray()     # dense Galerkin reference
        assert np.abs(following.A.toarray() - coarse).max() <= 1e-12 * np.abs(coarse).max()
    r = np.random.default_rng(4).standard_normal(A.shape[0])
    expected = new.hierarchy.aspreconditioner(cycle="V") @ r   # pyamg's cycle on it
    assert np.linalg.norm(new.apply(r) - expected) <= 1e-13 * np.linalg.norm(expected)
    assert dot_error(new.apply, new.apply_transpose, A.shape[0]) <= DOT_RTOL
    # the original is untouched, and a refresh at its own matrix reproduces it
    assert np.linalg.norm(M.apply(r) - M.hierarchy.aspreconditioner(cycle="V") @ r) \
        <= 1e-13 * np.linalg.norm(M.apply(r))
    if smoother == "default":  # no spectral-radius estimate (a random start) in its set-up
        same = M.refreshed(matrix(name, GRID))
        assert np.linalg.norm(same.apply(r) - M.apply(r)) <= 1e-12 * np.linalg.norm(M.apply(r))


def test_a_refresh_with_another_shape_is_refused() -> None:
    M = build("sa", "V", "default", "poisson")
    with pytest.raises(ValueError, match="hierarchy was built for"):
        M.refreshed(matrix("poisson", GRID + 1))


def test_a_refresh_keeps_a_declared_symmetry_and_tests_a_found_one_again() -> None:
    A = matrix("poisson", GRID)
    declared = AMGPreconditioner(A, symmetric=True)
    skewed = A + 1e-3 * sp.csr_array(sp.triu(A, k=1))  # no longer symmetric
    assert declared.refreshed(skewed).symmetric                  # the user's word
    found = AMGPreconditioner(A)
    assert found.symmetric                                        # tested: symmetric
    assert not found.refreshed(skewed).symmetric                  # tested again

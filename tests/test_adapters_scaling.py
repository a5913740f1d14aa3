"""Elementwise laws s(θ) and their derivatives."""

from __future__ import annotations

import numpy as np
import pytest

from krylov_adjoint.adapters import Scaling, as_scaling, exponential, linear, simp

THETA = np.linspace(0.05, 0.95, 19)


@pytest.mark.parametrize("law", [linear(), exponential(), simp(), simp(1.0, 0.0),
                                 simp(4.5, 1e-3), as_scaling(lambda t: (t**3, 3 * t**2)),
                                 as_scaling((np.sin, np.cos))],
                         ids=["linear", "exp", "simp3", "simp1", "simp4.5", "joint", "pair"])
def test_derivative_matches_central_differences(law):
    h = 1e-6
    fd = (law(THETA + h) - law(THETA - h)) / (2 * h)
    s, ds = law.both(THETA)
    np.testing.assert_allclose(ds, fd, rtol=1e-7)
    np.testing.assert_array_equal(s, law(THETA))


def test_simp_values():
    law = simp(3.0, 1e-9)
    np.testing.assert_allclose(law(np.array([0.0, 0.5, 1.0])), [1e-9, 1e-9 + (1 - 1e-9) / 8, 1])
    np.testing.assert_allclose(law.derivative(np.array([0.0, 1.0])), [0.0, 3 * (1 - 1e-9)])
    with pytest.raises(ValueError, match="penalty"):
        simp(0.5)
    with pytest.raises(ValueError, match="eps"):
        simp(3.0, 1.0)


def test_named_laws_and_errors():
    assert as_scaling("simp", simp_penalty=2.0, simp_eps=0.0)(np.array([0.5]))[0] == 0.25
    assert as_scaling("exp").name == "exp"
    law = Scaling(np.exp, np.exp, "mine")
    assert as_scaling(law) is law
    with pytest.raises(ValueError, match="scaling must be"):
        as_scaling("quadratic")
    with pytest.raises(TypeError):
        as_scaling(3.0)
    with pytest.raises(ValueError, match="pair"):
        as_scaling(lambda t: t).both(THETA)
    with pytest.raises(ValueError, match="elementwise"):
        Scaling(np.sum, np.exp).both(THETA)


def test_wrong_derivative_is_detected():
    wrong = Scaling(np.square, lambda t: t)  # s' should be 2t
    h = 1e-6
    fd = (wrong(THETA + h) - wrong(THETA - h)) / (2 * h)
    assert not np.allclose(wrong.derivative(THETA), fd, rtol=1e-7)

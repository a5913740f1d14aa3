"""The demo (the README's first command) runs and verifies its gradient."""

from __future__ import annotations

from krylov_adjoint.demo import main


def test_demo_verifies_its_gradient_on_a_small_grid(capsys):
    assert main(["--n", "60"]) == 0
    out = capsys.readouterr().out
    assert "N = 3,600 unknowns, P = 3,600 parameters" in out
    assert "Taylor test PASSED" in out and "gradient verified" in out
    assert "CONVERGED_RTOL" in out

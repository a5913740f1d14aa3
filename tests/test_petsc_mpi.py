"""The PETSc backend under mpirun on 1, 2 and 3 ranks.

Each test launches ``mpirun -n K python tests/mpi/<script>.py`` under ``timeout``, so that a
deadlock fails fast, and reads one JSON record per rank from its output. A missing petsc4py,
mpi4py or mpirun makes these tests fail (the scripts cannot run), not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.mpi

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "mpi"
MARK = "KA-RESULT "


def mpirun() -> str:
    """mpirun beside the interpreter (the mpich wheel), else on PATH."""
    local = Path(sys.executable).parent / "mpirun"
    found = str(local) if local.exists() else shutil.which("mpirun")
    if found is None:
        pytest.fail("mpirun not found: pip install mpich (or install an MPI)")
    return found


def run_mpi(script: str, nranks: int, *args: str, timeout: float = 90.0,
            expect_records: bool = True) -> tuple[list[dict], str, float]:
    """Run a script under mpirun; return every rank's record (by rank), the output, seconds."""
    command = ["timeout", "-k", "5", str(timeout), mpirun(), "-n", str(nranks),
               sys.executable, str(SCRIPTS / script), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode == 124:
        pytest.fail(f"{script} on {nranks} ranks timed out after {timeout} s (deadlock?)\n"
                    f"{output[-4000:]}")
    records = [json.loads(line[len(MARK):]) for line in done.stdout.splitlines()
               if line.startswith(MARK)]
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{output[-6000:]}"
    if expect_records:
        assert sorted(r["rank"] for r in records) == list(range(nranks)), output[-4000:]
    return sorted(records, key=lambda r: r["rank"]), output, seconds


@pytest.mark.parametrize("nranks", [1, 2, 3])
def test_gradients_match_serial_and_verify(nranks):
    records, output, _ = run_mpi("gradients.py", nranks, timeout=150)
    r = records[0]
    for other in records[1:]:  # global quantities: every rank agrees
        for key in ("convection_primal_iterations", "convection_adjoint_iterations",
                    "taylor_min_rate", "dot_convection_operator"):
            assert other[key] == r[key], key
    names = ["diffusion_2d", "convection", "convection_explicit", "diffusion_3d"]
    for name in names + (["diffusion_3d_allatonce"] if nranks > 1 else []):
        assert r[f"{name}_gradient_error"] <= 1e-8, (name, r)
        assert r[f"{name}_objective_error"] <= 1e-8, (name, r)
        assert r[f"{name}_theta_error"] <= 1e-14, (name, r)
        assert r[f"{name}_reasons"] == ["CONVERGED_RTOL", "CONVERGED_RTOL"], (name, r)
    assert r["diffusion_2d_adjoint_pc"] == "shared"
    assert r["convection_adjoint_pc"] == "transpose"
    assert r["convection_explicit_adjoint_pc"] == "explicit"
    assert r["taylor_passed"], r
    assert 1.9 <= r["taylor_min_rate"] <= 2.1, r
    for key in ("dot_diffusion_operator", "dot_convection_operator"):
        assert r[key] <= 1e-12, (key, r)
    for key in ("dot_diffusion_vjp", "dot_convection_vjp", "dot_convection_rhs_vjp",
                "dot_convection_pc"):
        assert r[key] <= 1e-10, (key, r)
    assert r["adjoint_pc_gap_transpose"] <= 1e-12, r
    assert r["vecs_gradient_error"] <= 1e-10, r
    assert r["adjoint_pc_gap_explicit"] < 0.05, r  # Chebyshev bounds estimated on Aᵀ


@pytest.mark.parametrize("nranks", [1, 3])
def test_preconditioner_set_up_once_per_theta(nranks):
    records, _, _ = run_mpi("gradients.py", nranks, "--setups-only", timeout=90)
    r = records[0]
    for prefix in ("", "convection_"):
        for mode in ("explicit", "transpose"):
            # three gradients at three θ: 3 GAMG set-ups without reuse, 1 with; the adjoint
            # solves never set the GAMG hierarchy up again
            assert r[f"{prefix}setups_reuse0_{mode}"] == [3, 3], r
            assert r[f"{prefix}setups_reuse1_{mode}"] == [1, 1], r


FAILURES = {
    "raise_in_matvec": ("CollectiveCallbackError", "operator.matvec", "simulated failure"),
    "raise_in_vjp": ("CollectiveCallbackError", "operator.vjp", "simulated failure in the vjp"),
    "nan_in_matvec": ("CollectiveCallbackError", "operator.matvec", "non-finite"),
    "wrong_size_output": ("CollectiveCallbackError", "operator.matvec", "expected shape"),
    "wrong_size_theta": ("CollectiveInputError", "theta", "expected shape"),
    # a sub-solver of block Jacobi failing on one rank inside the set-up
    "missing_diagonal": ("CollectiveCallbackError", "the preconditioner set-up",
                         "PETSc error 73"),
}


@pytest.mark.parametrize("nranks", [2, 3])
@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure_on_one_rank_raises_on_every_rank(case, nranks):
    records, output, seconds = run_mpi("failures.py", nranks, case, timeout=45)
    kind, culprit, words = FAILURES[case]
    for r in records:
        assert r["raised"] == kind, (r, output[-3000:])
        assert r["named_rank"] == 1, r
        assert culprit in r["message"] and "rank 1" in r["message"], r
        assert words in r["message"], r
        assert r["seconds"] < 10.0, r
    if case in ("wrong_size_theta", "missing_diagonal"):
        assert all(r["recovered"] for r in records), records
    assert seconds < 40.0


@pytest.mark.parametrize("nranks", [2])
def test_unconverged_solve_raises_convergence_error_on_every_rank(nranks):
    records, _, _ = run_mpi("failures.py", nranks, "not_converged", timeout=45)
    for r in records:
        assert r["raised"] == "ConvergenceError", r
        assert "DIVERGED_MAXITER" in r["message"], r
        assert r["recovered"] is True, r


def test_options_prefixes_and_command_line():
    records, output, _ = run_mpi(
        "options.py", 2, "-ka_primal_ksp_type", "bcgs", "-ka_adjoint_ksp_monitor",
        "-ksp_converged_reason", "-ka_primal_mg_levels_ksp_max_it", "3",
        "-ka_primal_ksp_rtol", "1e-7", "-log_view", timeout=60)
    r = records[0]
    assert r["primal_ksp"] == "bcgs" and r["adjoint_ksp"] == "gmres", r
    assert r["primal_prefix"] == "ka_primal_" and r["adjoint_prefix"] == "ka_adjoint_"
    assert r["primal_pc"] == "gamg" and r["smoother"] == ["chebyshev", "jacobi"], r
    assert r["adjoint_mode"] == "transpose" and r["rtol"] == pytest.approx(1e-7)
    assert r["converged"] == [True, True]
    assert "Residual norm" in output  # -ka_adjoint_ksp_monitor
    assert "Linear ka_primal_ solve converged due to" in output  # inherited -ksp_converged_reason
    assert "Linear ka_adjoint_ solve converged due to" in output
    assert "PCSetUp_GAMG+" in output  # -log_view


def test_adjoint_pc_from_the_command_line_is_independent():
    records, _, _ = run_mpi("options.py", 2, "-ka_adjoint_pc_type", "jacobi", timeout=60)
    r = records[0]
    assert r["adjoint_mode"] == "own" and r["adjoint_pc"] == "jacobi", r
    assert r["converged"] == [True, True]


def test_example_runs_quick_on_two_ranks():
    _, output, _ = run_mpi(str(ROOT / "examples" / "mpi_diffusion_3d.py"), 2, "--quick",
                           timeout=90, expect_records=False)
    assert "CONVERGED_RTOL" in output and "peak memory per rank: rank 0" in output, output


@pytest.mark.slow
def test_benchmark_quick_mode_writes_its_summary(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_mpi.py"), "--quick",
                           "--json", str(out), "--timeout", "120"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())
    for case in ("diffusion_3d", "convection_2d"):
        entry = summary[case]
        assert entry["efficiency_2"] > 0
        for ranks in ("1", "2"):
            r = entry["per_ranks"][ranks]
            assert r["overhead_vs_petsc4py"] > 0 and r["adjoint_over_primal_solve"] > 0
            # the same solves with the same options (the explicit adjoint PC is close, not equal)
            assert r["iterations"][0] == r["raw_iterations"][0]
            assert abs(r["iterations"][1] - r["raw_iterations"][1]) <= 2

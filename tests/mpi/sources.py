"""Under mpirun: many sources on PETSc against the dense reference; failures on one rank.

Every rank prints one ``KA-RESULT`` record: per problem, the relative errors of J and dJ/dθ
over S sources against the dense reference (the numbers are global: every rank agrees), the
solves' iterations and reasons, the set-ups; then the errors raised when one rank's
right-hand side callback fails or has the wrong length.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _common import comm, emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import PROBLEMS, relative_error, run  # noqa: E402
from test_sources import dense_sources_reference, local_sources, source_data  # noqa: E402

import krylov_adjoint as ka  # noqa: E402


def gradient_case(name: str) -> dict:
    model = PROBLEMS[name].build()
    data = source_data(model)
    J_ref, g_ref = dense_sources_reference(model, data, model.theta)
    with run("petsc", model, preconditioner="amg") as r:
        sources = local_sources(r, data)
        result = r.solver.sources_gradient(r.local(model.theta), sources)
        again = r.solver.sources_gradient(r.local(model.theta + 1e-6), sources)
        return {
            "gradient_error": relative_error(r.whole(result.gradient, model.n_params), g_ref),
            "objective_error": abs(result.objective - J_ref) / abs(J_ref),
            "converged": bool(result.converged), "solves": result.solves,
            "primal_iterations": [s.iterations for s in result.primal],
            "adjoint_iterations": [s.iterations for s in result.adjoint_solves],
            "warm_primal_iterations": [s.iterations for s in again.primal],
            "setups": r.solver.setups,
        }


def failure(kind: str) -> str:
    """The error every rank raises when rank 1 alone has a bad right-hand side."""
    model = PROBLEMS["diffusion"].build()
    rank = comm().Get_rank()
    with run("petsc", model, preconditioner="amg") as r:
        n_local = r.solver.problem.n_local
        good = np.ones(n_local)

        def flaky(th: np.ndarray) -> np.ndarray:
            if rank == 1:
                raise RuntimeError("no current on this rank")
            return good

        if kind == "callback":
            rhs = [good, good, ka.RightHandSide(flaky, vjp=lambda th, lam: np.zeros(th.size))]
        else:
            rhs = [good, np.ones(n_local + (1 if rank == 1 else 0))]
        objectives = [ka.LinearFunctional(good)] * len(rhs)
        try:
            r.solver.sources_gradient(r.local(model.theta), ka.Sources(rhs, objectives))
        except Exception as exc:  # noqa: BLE001  (the record says which)
            return f"{type(exc).__name__}: {exc}"
    return "no error"


def main() -> None:
    comm()
    emit({"cases": {name: gradient_case(name) for name in ("diffusion", "convection",
                                                             "source")},
          "callback_failure": failure("callback"), "length_failure": failure("length")})


if __name__ == "__main__":
    main()

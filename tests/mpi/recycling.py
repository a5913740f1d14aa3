"""Under mpirun: PETSc gradients with recycled starts along a path of θ.

Every rank prints one ``KA-RESULT`` record: per case, the largest relative difference of the
gradients with ``recycle=4`` from those with ``recycle=0`` and from the dense reference, the
recycled dimensions reported, the same after a requested preconditioner set-up, and the
refusal of a bad ``recycle``. The numbers are global: every rank agrees.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _common import comm, emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import PROBLEMS, dense_reference, relative_error, run  # noqa: E402

CASES = (("diffusion", "cg", "amg"), ("convection", "gmres", "jacobi"),
         ("source", "gmres", "amg"))


def path_case(name: str, method: str, pc: str) -> dict:
    model = PROBLEMS[name].build()
    rng = np.random.default_rng(5)
    thetas = [model.theta + 0.05 * k * rng.standard_normal(model.theta.size)
              for k in range(4)]
    out: dict = {"vs_plain": 0.0, "vs_reference": 0.0, "dimensions": []}
    with run("petsc", model, method=method, preconditioner=pc) as plain, \
            run("petsc", model, method=method, preconditioner=pc, recycle=4,
                options_prefix="rec_") as recycled:
        for theta in thetas:
            a = plain.whole_gradient(plain.solver.gradient(plain.local(theta)))
            result = recycled.solver.gradient(recycled.local(theta))
            b = recycled.whole_gradient(result)
            out["vs_plain"] = max(out["vs_plain"], relative_error(b, a))
            reference = dense_reference(model, theta).gradient
            out["vs_reference"] = max(out["vs_reference"], relative_error(b, reference))
            out["dimensions"].append([result.primal.extra["recycled_dimension"],
                                      result.adjoint_solve.extra["recycled_dimension"]])
            out["saved_nonnegative"] = bool(result.primal.extra["iterations_saved"] >= 0)
        recycled.solver.rebuild_preconditioner()
        result = recycled.solver.gradient(recycled.local(thetas[-1]))
        out["after_rebuild"] = [bool(result.preconditioner_rebuilt),
                                result.primal.extra["recycled_dimension"]]
        out["after_rebuild_error"] = relative_error(
            recycled.whole_gradient(result), dense_reference(model, thetas[-1]).gradient)
    return out


def bad_option() -> str:
    try:
        with run("petsc", PROBLEMS["diffusion"].build(), recycle=-2):
            pass
    except ValueError as exc:
        return f"ValueError: {exc}"
    return "accepted"


def main() -> None:
    comm()
    cases = {"-".join(case): path_case(*case) for case in CASES}
    emit({"cases": cases, "refused": bad_option()})


if __name__ == "__main__":
    main()

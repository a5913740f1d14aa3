"""Under mpirun with PETSc options on the command line: prefixes, defaults, overrides.

Run as ``options.py [PETSc options...]``; prints one ``KA-RESULT`` record per rank with the
KSP/PC types each solve ended up with.
"""

from __future__ import annotations

from _common import comm, emit

from krylov_adjoint.backends.petsc import PetscAdjointSolver, gallery


def main() -> None:
    comm()
    model = gallery.convection_diffusion_2d(16, 12, peclet=20.0)
    with PetscAdjointSolver(model.problem, rtol=1e-9) as solver:
        result = solver.gradient(model.theta)
        primal_pc = solver.primal_ksp.getPC()
        record = {
            "primal_ksp": solver.primal_ksp.getType(),
            "adjoint_ksp": solver.adjoint_ksp.getType(),
            "primal_pc": primal_pc.getType(),
            "adjoint_pc": solver.adjoint_ksp.getPC().getType(),
            "adjoint_mode": result.extra["adjoint_pc"],
            "primal_prefix": solver.primal_ksp.getOptionsPrefix(),
            "adjoint_prefix": solver.adjoint_ksp.getOptionsPrefix(),
            "smoother": [primal_pc.getMGSmoother(1).getType(),
                         primal_pc.getMGSmoother(1).getPC().getType()]
            if primal_pc.getType() == "gamg" else None,
            "converged": [result.primal.converged, result.adjoint_solve.converged],
            "rtol": solver.primal_ksp.getTolerances()[0],
        }
    emit(record)


if __name__ == "__main__":
    main()

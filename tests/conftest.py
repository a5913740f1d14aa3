"""One registry of test cases: problems × methods × preconditioners × backends.

A feature is tested once, on every backend, by parametrising a test with :func:`params`:

>>> [p.id for p in params(problems=["diffusion"], methods=["cg"], preconditioners=["amg"])]
['diffusion-cg-amg-serial', 'diffusion-cg-amg-petsc1']

Each problem is described once (:class:`ProblemSpec`, built from the serial gallery) and turned
into what each backend needs: the serial :class:`~krylov_adjoint.AdjointProblem` as it is, and
a :class:`~krylov_adjoint.backends.petsc.DistributedProblem` whose local callbacks gather x and
θ over the ranks and call the serial ones on the whole vectors (simple and exact, fine at test
sizes). Every problem is small (N ≤ 400) so that :func:`dense_reference` computes J and
``dJ/dθ = ∂J/∂θ − λᵀ(∂A/∂θ x − ∂b/∂θ)`` with ``numpy.linalg.solve`` and the explicit ``∂A/∂θ``.

Backends: ``"serial"`` and ``"petsc1"`` (PETSc on one rank, in this process; skipped when
petsc4py or mpi4py is missing). ``tests/test_registry_mpi.py`` runs the same PETSc cases on 2
and 3 ranks under mpirun (``tests/mpi/registry.py`` imports this module).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import krylov_adjoint as ka
from krylov_adjoint import gallery

#: Relative tolerance of the shared success check against the dense reference.
GRADIENT_RTOL = 1e-6
#: Krylov tolerance of the registry's solves (tight enough for GRADIENT_RTOL).
SOLVE_RTOL = 1e-11

BACKENDS = ("serial", "petsc1")
METHODS = ("auto", "gmres", "cg", "bicgstab")
PRECONDITIONERS = ("none", "jacobi", "amg")
#: The registry's preconditioner names, per backend.
PC_NAMES = {"serial": {"none": "none", "jacobi": "jacobi", "amg": "amg"},
            "petsc": {"none": "none", "jacobi": "jacobi", "amg": "gamg"}}


def framework(module: str) -> Any:
    """``import module`` (``"jax"`` or ``"torch"``) for a test module, or skip it naming the
    extra; under CI (``CI`` set) a missing framework fails instead: the test command installs
    both, so their tests must never be skipped there."""
    if importlib.util.find_spec(module) is None:
        message = f"{module} is not installed (pip install 'krylov-adjoint[{module}]')"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, but CI is set: the test command must install it",
                        pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return importlib.import_module(module)


@contextmanager
def script_module(name: str) -> Iterator[Any]:
    """``scripts/<name>.py`` imported as the module ``name`` (registered in ``sys.modules``
    while in use: dataclasses look their module up), for the benchmarks' smoke tests."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def petsc_missing() -> str | None:
    """Why the PETSc backend cannot run here, or None."""
    for module in ("petsc4py", "mpi4py"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'krylov-adjoint[mpi]')"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI (``CI`` set) the PETSc backend must be there: its tests are never skipped in
    CI, so a missing petsc4py or mpi4py stops the session instead of skipping them."""
    missing = petsc_missing()
    if os.environ.get("CI") and missing:
        pytest.exit(f"{missing}, but CI is set: the test command must install it", returncode=1)


# -- problems ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProblemSpec:
    """A model problem as data both backends are built from.

    ``build()`` returns a fresh :class:`~krylov_adjoint.gallery.ModelProblem` (its callbacks
    cache coefficients, so every test gets its own).
    """

    name: str
    build: Callable[[], gallery.ModelProblem] = field(repr=False)
    spd: bool
    about: str


def _diffusion() -> gallery.ModelProblem:
    return gallery.diffusion_2d(8, 6)


def _diffusion_tikhonov() -> gallery.ModelProblem:
    """The diffusion problem with J = misfit + (α/2)‖θ − θ_ref‖²: J depends on θ directly."""
    model = gallery.diffusion_2d(7, 6, seed=1)
    theta_ref = np.linspace(-0.5, 0.5, model.n_params)
    objective = model.problem.objective + ka.Tikhonov(0.3, theta_ref=theta_ref)
    problem = ka.AdjointProblem(model.problem.operator, model.problem.rhs, objective,
                                n_params=model.n_params)
    return gallery.ModelProblem(problem, model.theta, model.name + "+tikhonov", model.grid,
                                derivative_matrices=model.derivative_matrices)


def _convection() -> gallery.ModelProblem:
    return gallery.convection_diffusion_2d(8, 7, peclet=20.0)


def _source() -> gallery.ModelProblem:
    return gallery.convection_diffusion_2d(9, 6, peclet=10.0, velocity="constant",
                                           parameters="source")


PROBLEMS = {spec.name: spec for spec in (
    ProblemSpec("diffusion", _diffusion, True,
                "2-D diffusion, per-cell log-conductivity θ, SPD, b fixed"),
    ProblemSpec("tikhonov", _diffusion_tikhonov, True,
                "2-D diffusion with a Tikhonov term: ∂J/∂θ ≠ 0"),
    ProblemSpec("convection", _convection, False,
                "upwind convection–diffusion, nonsymmetric, θ in A and in b"),
    ProblemSpec("source", _source, False,
                "convection–diffusion with A fixed and b = θ (θ-dependent right-hand side)"),
)}


# -- the registry -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One problem × method × preconditioner × backend; ``id`` is its readable test id."""

    problem: str
    method: str
    preconditioner: str
    backend: str

    @property
    def id(self) -> str:
        return f"{self.problem}-{self.method}-{self.preconditioner}-{self.backend}"

    @property
    def spec(self) -> ProblemSpec:
        return PROBLEMS[self.problem]

    def skip_reason(self) -> str | None:
        """Why this case cannot run here (scipy's ``Case(..., skip=...)``), or None."""
        return petsc_missing() if self.backend.startswith("petsc") else None


def cases(*, problems: Iterable[str] = tuple(PROBLEMS), methods: Iterable[str] = METHODS,
          preconditioners: Iterable[str] = PRECONDITIONERS,
          backends: Iterable[str] = BACKENDS) -> list[Case]:
    """Every applicable combination (CG only on SPD problems), in a stable order."""
    return [Case(p, m, pc, b) for p in problems for m in methods for pc in preconditioners
            for b in backends if m != "cg" or PROBLEMS[p].spd]


#: The (method, preconditioner) pairs run on 2 and 3 ranks: each method and each
#: preconditioner at least once on every problem, to keep the mpirun part short.
MPI_PAIRS = (("auto", "amg"), ("cg", "amg"), ("gmres", "jacobi"), ("bicgstab", "none"))


def mpi_cases() -> list[Case]:
    """The PETSc cases run under mpirun (``tests/mpi/registry.py``)."""
    return [c for c in cases(backends=["petsc1"]) if (c.method, c.preconditioner) in MPI_PAIRS]


def params(**selection: Any) -> list[Any]:
    """:func:`cases` as ``pytest.param`` objects with readable ids and skip marks."""
    out = []
    for case in cases(**selection):
        reason = case.skip_reason()
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# -- the dense reference ----------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    objective: float
    gradient: np.ndarray
    x: np.ndarray


def dense_reference(model: gallery.ModelProblem, theta: np.ndarray) -> Reference:
    """J and dJ/dθ by dense linear algebra and the explicit ∂A/∂θ_k and ∂b/∂θ."""
    problem = model.problem
    n = problem.n
    A = np.column_stack([problem.operator.matvec(theta, e) for e in np.eye(n)])
    b = np.asarray(problem.rhs.value(theta), dtype=float)
    x = np.linalg.solve(A, b)
    lam = np.linalg.solve(A.T, np.asarray(problem.objective.grad_x(x, theta), dtype=float))
    gradient = np.zeros(problem.n_params)
    direct = problem.objective.grad_theta(x, theta)
    if direct is not None:
        gradient += direct
    if model.derivative_matrices is not None:
        gradient -= np.array([lam @ (dA @ x) for dA in model.derivative_matrices(theta)])
    if model.rhs_derivative is not None:
        gradient += lam @ model.rhs_derivative(theta)
    return Reference(float(problem.objective.value(x, theta)), gradient, x)


def dense_hessian_action(model: gallery.ModelProblem, theta: np.ndarray,
                         dtheta: np.ndarray) -> np.ndarray:
    """H·dθ as a central difference of the dense reference gradient along dθ."""
    h = 1e-5 * max(1.0, float(np.abs(theta).max())) / float(np.abs(dtheta).max())
    plus = dense_reference(model, theta + h * dtheta).gradient
    minus = dense_reference(model, theta - h * dtheta).gradient
    return (plus - minus) / (2 * h)


def relative_error(a: Any, b: Any) -> float:
    """‖a − b‖ / ‖b‖."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check_gradient(result: Any, gradient: np.ndarray, reference: Reference) -> None:
    """The shared success check: J and dJ/dθ match the dense reference, both solves converged.

    ``gradient`` is the whole dJ/dθ (gathered on a distributed backend).
    """
    assert result.primal.converged, result.primal
    assert result.adjoint_solve.converged, result.adjoint_solve
    assert relative_error(gradient, reference.gradient) <= GRADIENT_RTOL, \
        relative_error(gradient, reference.gradient)
    assert abs(result.objective - reference.objective) <= \
        GRADIENT_RTOL * max(abs(reference.objective), 1e-300)


@contextmanager
def unchanged(*arrays: np.ndarray) -> Iterator[None]:
    """Assert that the arrays (inputs and problem data) hold the same values afterwards."""
    before = [np.array(a, copy=True) for a in arrays]
    flags = [a.flags.writeable for a in arrays]
    yield
    for k, (a, old, flag) in enumerate(zip(arrays, before, flags, strict=True)):
        assert np.array_equal(a, old), f"input {k} was modified by the call"
        assert a.flags.writeable == flag, f"input {k} changed its writeable flag"


# -- the distributed problem from the same description ----------------------------------------
def distributed_problem(model: gallery.ModelProblem, *, structure: str | None = None,
                        comm: Any = None) -> Any:
    """The model as a DistributedProblem: local callbacks gather x and θ, call the serial ones.

    Every callback is collective (all ranks call them together, as the engine does); θ is
    gathered once per new θ, in the operator's ``prepare``. The
    objective's value is counted on rank 0 only (the library sums the ranks' contributions).
    """
    from krylov_adjoint.backends.petsc import DistributedOperator, DistributedProblem, Layout

    serial = model.problem
    op, rhs, objective = serial.operator, serial.rhs, serial.objective
    xl = Layout.create(serial.n, comm=comm, name="x")
    tl = Layout.create(serial.n_params, comm=comm, name="theta")
    rank = xl.comm.Get_rank()

    def whole(layout: Any, local: Any) -> np.ndarray:
        return layout.gather(np.ascontiguousarray(local, dtype=float), root=None)

    def rows(full: Any, layout: Any = xl) -> Any:
        return None if full is None else np.array(full[layout.start:layout.stop])

    prepared: dict[str, np.ndarray] = {}

    def prepare(th: np.ndarray) -> None:  # once per new θ: one gather, not one per product
        prepared["theta"] = whole(tl, th)

    def theta_of(th: np.ndarray) -> np.ndarray:  # the same on every rank: safe to branch on
        return prepared["theta"] if "theta" in prepared else whole(tl, th)

    def matvec(th: np.ndarray, x: np.ndarray) -> np.ndarray:
        return rows(op.matvec(theta_of(th), whole(xl, x)))

    def rmatvec(th: np.ndarray, y: np.ndarray) -> np.ndarray:
        return rows(op.rmatvec(theta_of(th), whole(xl, y)))

    def vjp(th: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return rows(op.vjp(theta_of(th), whole(xl, x), whole(xl, lam)), tl)

    def jvp(th: np.ndarray, x: np.ndarray, dth: np.ndarray) -> np.ndarray:
        return rows(op.jvp(theta_of(th), whole(xl, x), whole(tl, dth)))

    def assemble(th: np.ndarray) -> Any:
        return op.assemble(theta_of(th)).tocsr()[xl.start:xl.stop]

    def vjp_jvp(th: np.ndarray, x: np.ndarray, lam: np.ndarray, dth: np.ndarray) -> Any:
        return rows(op.vjp_jvp(theta_of(th), whole(xl, x), whole(xl, lam), whole(tl, dth)), tl)

    def jvp_transpose(th: np.ndarray, y: np.ndarray, dth: np.ndarray) -> Any:
        return rows(op.jvp_transpose(theta_of(th), whole(xl, y), whole(tl, dth)))

    declared = structure or op.structure.value
    general = declared == "general"
    second = op.depends_on_theta and not op.missing_second_order
    operator = DistributedOperator(
        matvec, layout=xl, rmatvec=rmatvec if general else None,
        vjp=vjp if op.depends_on_theta else None,
        jvp=jvp if (op.depends_on_theta and op.has_jvp) else None,
        structure=declared, assemble=assemble, prepare=prepare,
        depends_on_theta=op.depends_on_theta, vjp_jvp=vjp_jvp if second else None,
        jvp_transpose=jvp_transpose if second else None)

    if rhs.depends_on_theta:
        b = ka.RightHandSide(
            lambda th: rows(rhs.value(whole(tl, th))),
            vjp=lambda th, lam: rows(rhs.vjp(whole(tl, th), whole(xl, lam)), tl),
            jvp=lambda th, dth: rows(rhs.jvp(whole(tl, th), whole(tl, dth))),
            vjp_jvp=None if rhs.missing_second_order else
            lambda th, lam, dth: rows(rhs.vjp_jvp(whole(tl, th), whole(xl, lam),
                                                  whole(tl, dth)), tl))
    else:
        b = rows(rhs.value(None))

    def value(th: np.ndarray, x: np.ndarray) -> float:
        J = objective.value(whole(xl, x), whole(tl, th))
        return J if rank == 0 else 0.0

    def second(method: Any, out: Any, direction: Any) -> Any:
        """A second derivative of J on local arrays (None: identically zero)."""
        def local(th: np.ndarray, x: np.ndarray, v: np.ndarray) -> Any:
            return rows(method(whole(xl, x), whole(tl, th), whole(direction, v)), out)
        return local

    J = ka.Objective(
        J=value,
        dJ_dx=lambda th, x: rows(objective.grad_x(whole(xl, x), whole(tl, th))),
        dJ_dtheta=lambda th, x: rows(objective.grad_theta(whole(xl, x), whole(tl, th)), tl),
        d2J_dx2=second(objective.hess_xx, xl, xl),
        d2J_dxdtheta=second(objective.hess_xtheta, xl, tl),
        d2J_dthetadx=second(objective.hess_thetax, tl, xl),
        d2J_dtheta2=second(objective.hess_thetatheta, tl, tl))
    return DistributedProblem(operator, b, J, theta_layout=tl)


def serial_problem(model: gallery.ModelProblem, *, structure: str | None = None
                   ) -> ka.AdjointProblem:
    """The model's serial problem, or the same callbacks under another declared structure."""
    problem = model.problem
    if structure is None:
        return problem
    op = problem.operator
    operator = ka.ParametricOperator(
        op.matvec, n=op.n, rmatvec=op.rmatvec if structure == "general" else None,
        vjp=op.vjp, jvp=op.jvp, structure=structure, assemble=op.assemble)
    return ka.AdjointProblem(operator, problem.rhs, problem.objective,
                             n_params=problem.n_params)


# -- one solver interface over the backends ---------------------------------------------------
class Run:
    """A solver on one backend, taking and giving whole vectors.

    ``local(v)`` is the input a solver call takes for the whole θ-like ``v`` (this rank's part
    on PETSc); ``whole_gradient(result)`` is the whole dJ/dθ.
    """

    def __init__(self, backend: str, model: gallery.ModelProblem, *, method: str = "auto",
                 preconditioner: str = "amg", structure: str | None = None,
                 **options: Any) -> None:
        self.backend, self.model = backend, model
        options.setdefault("rtol", SOLVE_RTOL)
        if backend == "serial":
            self.solver = ka.AdjointSolver(serial_problem(model, structure=structure),
                                           method=method,
                                           preconditioner=PC_NAMES["serial"][preconditioner],
                                           **options)
            self.layout = None
        else:
            from krylov_adjoint.backends.petsc import PetscAdjointSolver

            problem = distributed_problem(model, structure=structure)
            self.layout = problem.theta_layout
            self.solver = PetscAdjointSolver(problem, method=method,
                                             preconditioner=PC_NAMES["petsc"][preconditioner],
                                             **options)

    def local(self, v: np.ndarray) -> np.ndarray:
        return v if self.layout is None else self.layout.local_part(v)

    def whole_gradient(self, result: Any) -> np.ndarray:
        return result.gradient if self.layout is None else result.gather_gradient(root=None)

    def whole(self, local: np.ndarray, size: int) -> np.ndarray:
        """The whole θ-like vector from this rank's part."""
        if self.layout is None:
            return np.asarray(local)
        return self.layout.gather(np.ascontiguousarray(local, dtype=float), root=None)

    def close(self) -> None:
        if self.layout is not None:
            self.solver.destroy()


@contextmanager
def run(backend: str, model: gallery.ModelProblem, **options: Any) -> Iterator[Run]:
    """A :class:`Run`, destroyed afterwards."""
    r = Run(backend, model, **options)
    try:
        yield r
    finally:
        r.close()


def run_case(case: Case, **options: Any) -> Any:
    """A context manager for the case's solver on its backend (``backend`` "petsc*")."""
    backend = "serial" if case.backend == "serial" else "petsc"
    return run(backend, case.spec.build(), method=case.method,
               preconditioner=case.preconditioner, **options)

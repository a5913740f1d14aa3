"""Under mpirun: the second-order checks of ``check_problem`` on distributed problems.

Every rank prints one ``KA-RESULT`` record: per model (the gallery's and the hand-written one
with every kind of second-order term), whether the report passed, its failing callbacks, its
checks and the usable rates of the Hessian's Taylor tests; then the failures with an injected
defect of ``operator.vjp_jvp`` and of ``objective.d2J_dthetadx`` (the same on every rank).
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import comm, emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import distributed_problem  # noqa: E402
from test_verify_second_order import DEFECTS, MODELS, hand_written  # noqa: E402

from krylov_adjoint.verify import check_problem  # noqa: E402


def verify(model) -> object:
    problem = distributed_problem(model)
    return check_problem(problem, problem.theta_layout.local_part(model.theta), rng=0)


def rates(report, name: str) -> list[float]:
    taylor = report[name].report
    return [float(r) for r in taylor.rates[taylor.usable]]


def main() -> None:
    comm()
    out: dict = {}
    for name, build in MODELS.items():
        report = verify(build())
        out[f"{name}_passed"] = report.passed
        out[f"{name}_failures"] = list(report.failures)
        out[f"{name}_names"] = list(report.names)
        out[f"{name}_third_order_rates"] = rates(report, "hessian.taylor")
        out[f"{name}_second_order_rates"] = rates(report, "hessian.gradient")
    for culprit in ("operator.vjp_jvp", "objective.d2J_dthetadx"):
        keyword, broken = DEFECTS[culprit]
        out[f"{culprit}_failures"] = list(verify(hand_written(**{keyword: broken})).failures)
    emit(out)


if __name__ == "__main__":
    main()

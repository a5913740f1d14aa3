"""The two recipes of docs/frameworks.md run as written and give the same gradient."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from conftest import framework

framework("jax")
framework("torch")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "frameworks.md"


def test_the_jax_and_torch_recipes_agree():
    jax_recipe, torch_recipe = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    jax_ns: dict = {}
    exec(jax_recipe, jax_ns)  # noqa: S102
    torch_ns: dict = {}
    exec(torch_recipe, torch_ns)  # noqa: S102
    np.testing.assert_allclose(float(jax_ns["value"]), float(torch_ns["loss"]), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(jax_ns["grad"]), torch_ns["theta"].grad.numpy(),
                               rtol=1e-7)

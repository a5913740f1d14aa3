"""Doctests of the framework packages need their framework: without it they are not
collected, except under CI (``CI`` set), where the test command installs both and a
missing one must fail (see ``tests/conftest.py::framework``)."""

import importlib.util
import os

collect_ignore = [module for module in ("jax", "torch")
                  if importlib.util.find_spec(module) is None and not os.environ.get("CI")]

"""Helpers shared by the application examples: timing, figures, the final JSON line.

Figures go to the current directory, or to the folder given by ``--out DIR``: running an
example never writes into the repository. The figures of the documentation are made by
running the examples with ``--out docs/img`` from the repository's root, as each page says.

Not part of the library: a few lines each example would otherwise repeat. Import it before
numpy: it asks OpenBLAS for one thread (unless ``OPENBLAS_NUM_THREADS`` is already set). The
Krylov loops spend their BLAS time in dot products and norms of single vectors, where a
threaded OpenBLAS (it splits vectors above 10,000 entries) gains nothing on a few cores and,
on a busy machine, loses milliseconds per call waking its threads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the thread setting)


def add_out_argument(parser: Any, what: str) -> None:
    """Add ``--out DIR`` (the folder of the figure; default the current directory)."""
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"folder of the PNG of {what} (default: the current directory; "
                             "--out docs/img remakes the documentation's figure); a path "
                             "ending in .png names the file itself")


def figure_path(out: str | Path | None, name: str) -> Path:
    """Where the figure ``name`` goes: ``out/name``, ``out`` itself if it ends in ``.png``, or
    ``name`` in the current directory when ``out`` is None.

    Examples
    --------
    >>> [figure_path(out, "fig.png").as_posix() for out in (None, "docs/img", "mine.png")]
    ['fig.png', 'docs/img/fig.png', 'mine.png']
    """
    if out is None:
        return Path(name)
    path = Path(out)
    return path if path.suffix.lower() == ".png" else path / name


def shown_path(path: str | Path) -> str:
    """``path`` relative to the current directory when it lies below it, else as given."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def pyplot() -> Any:
    """matplotlib's pyplot with the non-interactive Agg backend.

    Raises
    ------
    ImportError
        Naming the ``plots`` extra when matplotlib is missing.
    """
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the examples draw figures with matplotlib: "
                          "pip install 'krylov-adjoint[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` (parent folders created) and close it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return out


def plot_history(ax: Any, history: Any, ylabel: str) -> None:
    """The objective per optimiser iteration, on a log scale."""
    ax.semilogy(np.arange(len(history)), history, "-", lw=1.5)
    ax.set_xlabel("L-BFGS-B iteration")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


class Stopwatch:
    """Wall-clock seconds since construction, with named laps.

    Examples
    --------
    >>> clock = Stopwatch()
    >>> clock.lap("set-up") >= 0.0
    True
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self._last = self.start
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> float:
        """Record and return the seconds since the previous lap under ``name``."""
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now
        return self.laps[name]

    @property
    def elapsed(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.start


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def print_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Print ``summary`` as one JSON line (floats to 6 significant digits) and return it."""
    plain = _plain(summary)
    print(json.dumps(plain), flush=True)
    return plain

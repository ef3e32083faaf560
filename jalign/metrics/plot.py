"""Training curves from `metrics.jsonl` files: one panel per metric, runs overlaid."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jalign.errors import JalignError
from jalign.metrics.records import read_metrics

Run = str | os.PathLike | Sequence[Mapping]
Runs = Run | Sequence[Run] | Mapping[str, Run]


def _is_path(run: Run) -> bool:
    return isinstance(run, str | os.PathLike)


def _records(run: Run) -> list[dict]:
    return read_metrics(run) if _is_path(run) else list(run)


def _default_label(run: Run, index: int) -> str:
    """A path's run-directory name, else "run i"."""
    return Path(run).resolve().parent.name if _is_path(run) else f"run {index}"


def _labelled(runs: Runs) -> list[tuple[str, Run]]:
    if isinstance(runs, Mapping):
        return list(runs.items())
    if _is_path(runs) or (runs and isinstance(runs[0], Mapping)):
        runs = [runs]
    return [(_default_label(run, i), run) for i, run in enumerate(runs)]


def curves_figure(runs: Runs, keys: Sequence[str]) -> Figure:
    """A figure with one panel per key (x = step), one labelled line per run.

    A run is a `metrics.jsonl` path or a list of records. `runs` is one run, a sequence of
    runs (labelled by their run directory's name, or "run i"), or a mapping label -> run.
    """
    loaded = [(label, _records(run)) for label, run in _labelled(runs)]
    figure = Figure(figsize=(7, 2.6 * len(keys)), layout="constrained")
    FigureCanvasAgg(figure)
    for panel, key in enumerate(keys):
        axes = figure.add_subplot(len(keys), 1, panel + 1)
        plotted = False
        for label, records in loaded:
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points, strict=True)
                axes.plot(steps, values, label=label)
                plotted = True
        if not plotted:
            available = sorted({k for _, records in loaded for r in records for k in r})
            raise JalignError(f"no run has metric {key!r}; available: {', '.join(available)}")
        axes.set_ylabel(key)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def plot_curves(runs: Runs, keys: Sequence[str], out_png: str | os.PathLike) -> Path:
    """Save `curves_figure(runs, keys)` as a PNG (Agg; no display needed) and return its path."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    curves_figure(runs, keys).savefig(out, dpi=100)
    return out

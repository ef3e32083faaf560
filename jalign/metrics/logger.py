"""`MetricsLogger`: JSONL + TensorBoard + terminal progress for a run directory.

    with MetricsLogger(run_dir, resume_step=restored_step, total_steps=1000) as log:
        for step in ...:
            state, metrics = train_step(state, batch)
            if step % log_every == 0:
                record = log.log(step, {**metrics, **throughput.rates()})

Every process converts the metrics (one `jax.device_get` for all of them) and gets the host
record back; only process 0 writes files or prints.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from jalign.metrics.progress import Progress
from jalign.metrics.records import METRICS_JSONL, truncate_metrics

TENSORBOARD_DIR = "tensorboard"
_RESERVED = ("step", "time")


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"eval": {"loss": x}}` -> `{"eval/loss": x}`."""
    flat = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def to_host_scalars(metrics: Mapping[str, Any]) -> dict[str, bool | int | float]:
    """Fetch all metrics with a single `jax.device_get` and turn each into a Python scalar."""
    host = jax.device_get(_flatten(metrics))
    scalars: dict[str, bool | int | float] = {}
    for name, value in host.items():
        array = np.asarray(value)
        if array.size != 1:
            raise ValueError(f"metric {name!r} has shape {array.shape}; only scalars are logged")
        if array.dtype.kind == "b":
            scalars[name] = bool(array.item())
        elif array.dtype.kind in "iu":
            scalars[name] = int(array.item())
        else:
            scalars[name] = float(array.reshape(()))
    return scalars


class MetricsLogger:
    """Writes `metrics.jsonl` and TensorBoard events under `run_dir`, and shows progress.

    `resume_step`: the step a run resumed from; records after it are dropped from the JSONL
    (and TensorBoard purges its events after it), since those steps will be logged again.
    None means a fresh start: any earlier records in `run_dir` are dropped.
    Each JSONL line is flushed when logged, so a crash loses nothing already logged.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        resume_step: int | None = None,
        total_steps: int | None = None,
        print_every: int = 10,
        tensorboard: bool = True,
        progress: bool = True,
        stream: TextIO | None = None,
    ):
        self.run_dir = Path(run_dir)
        self._jsonl: TextIO | None = None
        self._tensorboard = None
        self._progress: Progress | None = None
        if jax.process_index() != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        jsonl_path = self.run_dir / METRICS_JSONL
        truncate_metrics(jsonl_path, resume_step)
        self._jsonl = jsonl_path.open("a")
        if tensorboard:
            # Imported here: tensorboardX imports torch when it is installed (about a second).
            from tensorboardX import SummaryWriter

            purge_step = 0 if resume_step is None else resume_step + 1
            self._tensorboard = SummaryWriter(
                str(self.run_dir / TENSORBOARD_DIR), purge_step=purge_step
            )
        if progress:
            self._progress = Progress(
                stream or sys.stderr, total_steps, resume_step or 0, print_every
            )

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Log scalar `metrics` (jax arrays, numpy or Python numbers, nested dicts) at `step`.

        Returns the host record `{"step", "time", **scalars}` on every process.
        """
        scalars = to_host_scalars(metrics)
        clash = [name for name in _RESERVED if name in scalars]
        if clash:
            raise ValueError(f"metric names {clash} are reserved for the record itself")
        record = {"step": int(step), "time": time.time(), **scalars}
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        if self._tensorboard is not None:
            for name, value in scalars.items():
                self._tensorboard.add_scalar(name, float(value), global_step=int(step))
            self._tensorboard.flush()
        if self._progress is not None:
            self._progress.update(int(step), record)
        return record

    def close(self) -> None:
        """Close the files and the progress bar; safe to call more than once."""
        for sink in (self._jsonl, self._tensorboard, self._progress):
            if sink is not None:
                sink.close()
        self._jsonl = self._tensorboard = self._progress = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

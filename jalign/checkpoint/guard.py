"""Stopping a run at the first non-finite step, pointing at the checkpoint to resume from."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jalign.errors import JalignError
from jalign.metrics import to_host_scalars


def check_finite(metrics: Mapping[str, Any], step: int, last_good_step: int | None) -> None:
    """Raise JalignError if any float metric is NaN/inf or the step flagged `nonfinite`.

    The train step refuses a non-finite update (see `jalign.train.state`), so the state in
    memory and the last checkpoint are both still good; the message says which step that is.
    """
    scalars = to_host_scalars(metrics)
    bad = {
        name: value
        for name, value in scalars.items()
        if isinstance(value, float) and not math.isfinite(value)
    }
    if not bad and not scalars.get("nonfinite"):
        return
    shown = ", ".join(f"{name}={value}" for name, value in (bad or {"nonfinite": 1}).items())
    checkpoint = (
        f"last good checkpoint is step {last_good_step} (untouched)"
        if last_good_step is not None
        else "no checkpoint has been saved yet"
    )
    raise JalignError(f"non-finite loss at step {step} ({shown}); {checkpoint}")

"""`metrics.jsonl`: one JSON object per logged step, `{"step": int, "time": float, **scalars}`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from jalign.errors import JalignError

METRICS_JSONL = "metrics.jsonl"


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """All records of a metrics file, in file order.

    A malformed *last* line is the trace of a crash in the middle of a write and is skipped;
    a malformed line anywhere else is an error.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if lineno == len(lines):
                break
            raise JalignError(f"{path}:{lineno}: not a JSON record ({e.msg})") from e
    return records


def truncate_metrics(path: str | os.PathLike, keep_through_step: int | None) -> None:
    """Drop records with `step > keep_through_step` (all of them when it is None).

    Used on resume from a checkpoint at step M: steps after M will be logged again, so their
    old records go. The file is rewritten to a temporary name and renamed into place.
    """
    path = Path(path)
    if not path.exists():
        return
    kept = []
    if keep_through_step is not None:
        kept = [r for r in read_metrics(path) if r["step"] <= keep_through_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)

"""The shard plan: each parameter's path, shape, spec and bytes per device (`jalign shard-plan`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from jax.sharding import Mesh, NamedSharding

from jalign.sharding.rules import Placement, Rule, place


def _bytes_per_device(p: Placement, mesh: Mesh) -> int:
    shard = NamedSharding(mesh, p.spec).shard_shape(p.shape)
    return math.prod(shard) * np.dtype(p.dtype).itemsize


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def format_shard_plan(
    params, mesh: Mesh, user_rules: Sequence[Rule] = (), family: str | None = None
) -> str:
    """An aligned table of every parameter, then totals per device and for the whole model."""
    placements = place(params, mesh, user_rules, family)
    rows = [("parameter", "shape", "spec", "bytes/device", "rule")]
    per_device = 0
    total = 0
    for p in placements:
        b = _bytes_per_device(p, mesh)
        per_device += b
        total += math.prod(p.shape) * np.dtype(p.dtype).itemsize
        spec = "(" + ", ".join(str(e) for e in p.spec) + ")" if len(p.spec) else "replicated"
        rows.append((p.path, str(p.shape), spec, _human(b), p.rule or "UNMATCHED -> replicated"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ]
    mesh_desc = ", ".join(f"{n}={s}" for n, s in mesh.shape.items())
    lines.append("")
    lines.append(f"mesh: {mesh_desc} ({mesh.size} devices)")
    lines.append(f"parameters: {len(placements)}, model: {_human(total)}")
    lines.append(f"per device: {_human(per_device)}")
    unmatched = sum(p.rule is None for p in placements)
    if unmatched:
        lines.append(f"unmatched (replicated): {unmatched}")
    return "\n".join(lines)

"""The shard plan: each parameter's path, shape, spec, matched rule and bytes per device.

`jalign shard-plan MODEL --mesh data=2,fsdp=2,tensor=2` prints `format_shard_plan(shard_plan(
abstract_params, mesh, rules))`; with `jax.ShapeDtypeStruct` leaves and an `AbstractMesh` no
weight or device is needed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from jax.sharding import NamedSharding, PartitionSpec

from jalign.sharding.rules import Rule, place
from jalign.sharding.specs import MeshLike, format_mesh, format_spec

UNMATCHED = "unmatched -> replicated"


@dataclasses.dataclass(frozen=True)
class PlanEntry:
    """One parameter: where it goes and what it costs each device."""

    path: str
    shape: tuple[int, ...]
    dtype: Any
    spec: PartitionSpec
    rule: str  # the matched regex, or UNMATCHED
    shard_shape: tuple[int, ...]  # the slice each device holds
    bytes_per_device: int
    bytes_total: int


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """Every parameter's entry (in leaf order) and the mesh they are planned on."""

    mesh_shape: dict[str, int]
    entries: tuple[PlanEntry, ...]

    @property
    def bytes_per_device(self) -> int:
        """Parameter bytes each device holds (replicated parameters count in full)."""
        return sum(e.bytes_per_device for e in self.entries)

    @property
    def model_bytes(self) -> int:
        """Bytes of one full copy of the parameters."""
        return sum(e.bytes_total for e in self.entries)

    @property
    def unmatched(self) -> list[str]:
        """Paths no rule matched (replicated)."""
        return [e.path for e in self.entries if e.rule == UNMATCHED]


def shard_plan(
    params: Any, mesh: MeshLike, user_rules: Sequence[Rule] = (), family: str | None = None
) -> ShardPlan:
    """The plan of `place(params, mesh, user_rules, family)` (same rules, same errors)."""
    entries = []
    for p in place(params, mesh, user_rules, family).params:
        shard_shape = tuple(NamedSharding(mesh, p.spec).shard_shape(p.shape))
        itemsize = p.dtype.itemsize
        entries.append(
            PlanEntry(
                path=p.path,
                shape=p.shape,
                dtype=p.dtype,
                spec=p.spec,
                rule=p.rule if p.rule is not None else UNMATCHED,
                shard_shape=shard_shape,
                bytes_per_device=math.prod(shard_shape) * itemsize,
                bytes_total=math.prod(p.shape) * itemsize,
            )
        )
    return ShardPlan(dict(mesh.shape), tuple(entries))


def human_bytes(n: int) -> str:
    """1536 -> "1.50 KiB"; below 1 KiB exact ("12 B")."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.2f} {unit}"


def _exact(n: int) -> str:
    return human_bytes(n) if n < 1024 else f"{human_bytes(n)} ({n:,} B)"


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def format_shard_plan(plan: ShardPlan) -> str:
    """An aligned table of every parameter, then the totals per device and for the model."""
    header = ("parameter", "shape", "dtype", "spec", "per device", "bytes/device", "rule")
    rows = [header]
    for e in plan.entries:
        rows.append(
            (
                e.path,
                _shape(e.shape),
                str(e.dtype),
                format_spec(e.spec),
                _shape(e.shard_shape),
                human_bytes(e.bytes_per_device),
                e.rule,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    bytes_column = header.index("bytes/device")  # the one numeric column: right-aligned
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i == bytes_column else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        lines.append("  ".join([*cells, row[-1]]))
    devices = math.prod(plan.mesh_shape.values())
    lines += [
        "",
        f"mesh: {format_mesh(plan.mesh_shape)} ({devices} devices)",
        f"parameters: {len(plan.entries)}, "
        f"{sum(math.prod(e.shape) for e in plan.entries):,} elements",
        f"model: {_exact(plan.model_bytes)}",
        f"per device: {_exact(plan.bytes_per_device)}",
    ]
    if plan.unmatched:
        lines.append(f"{UNMATCHED}: {len(plan.unmatched)} ({', '.join(plan.unmatched)})")
    return "\n".join(lines)

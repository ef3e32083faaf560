"""PartitionSpecs: reading them from config, printing them, and checking one fits an array.

A spec has one entry per leading array dimension: a mesh axis name, a tuple of names (the
dimension is split over their product), or None (not split); missing trailing entries are None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from jax.sharding import AbstractMesh, Mesh, PartitionSpec

from jalign.errors import JalignError

MeshLike = Mesh | AbstractMesh


def parse_spec(spec: Any, where: str) -> PartitionSpec:
    """A PartitionSpec from config: a list/tuple of axis names, None, or lists of names.

    `None` (the whole spec) means replicated. `where` names the config entry for errors.
    """
    if isinstance(spec, PartitionSpec):
        return spec
    if spec is None:
        return PartitionSpec()
    if not isinstance(spec, list | tuple):
        raise JalignError(
            f"{where}: spec {spec!r} must be a list with one entry per dimension: an axis "
            f"name, None, or a list of axis names (e.g. ['fsdp', 'tensor'] or [None, 'tensor'])"
        )
    entries: list[str | tuple[str, ...] | None] = []
    for entry in spec:
        if entry is None or (isinstance(entry, str) and entry):
            entries.append(entry)
        elif (
            isinstance(entry, list | tuple)
            and entry
            and all(isinstance(name, str) and name for name in entry)
        ):
            entries.append(tuple(entry))
        else:
            raise JalignError(
                f"{where}: spec entry {entry!r} must be an axis name, None, or a non-empty list "
                f"of axis names"
            )
    return PartitionSpec(*entries)


def entry_axes(entry: Any) -> tuple[str, ...]:
    """The mesh axes one spec entry splits its dimension over (none for None)."""
    if entry is None or entry is PartitionSpec.UNCONSTRAINED:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def format_spec(spec: PartitionSpec) -> str:
    """P("fsdp", None) -> "[fsdp, None]"; P() -> "replicated"."""
    if not any(entry_axes(entry) for entry in spec):
        return "replicated"
    parts = []
    for entry in spec:
        axes = entry_axes(entry)
        if not axes:
            parts.append("None")
        elif len(axes) == 1:
            parts.append(axes[0])
        else:
            parts.append("(" + ", ".join(axes) + ")")
    return "[" + ", ".join(parts) + "]"


def format_mesh(mesh_shape: Mapping[str, int]) -> str:
    """A mesh's `.shape` -> "data=2, fsdp=2, tensor=2"."""
    return ", ".join(f"{name}={size}" for name, size in mesh_shape.items())


def check_axes(spec: PartitionSpec, mesh: MeshLike, origin: str) -> None:
    """Every axis `spec` names exists in `mesh`, and none is used twice. `origin` names the
    spec's source for the message (e.g. "partition rule 'q_proj' -> [fsdp, tensor]")."""
    seen: set[str] = set()
    for entry in spec:
        for axis in entry_axes(entry):
            if axis not in mesh.axis_names:
                raise JalignError(
                    f"{origin} names mesh axis {axis!r}, which the mesh lacks; mesh axes: "
                    f"{', '.join(mesh.axis_names)}"
                )
            if axis in seen:
                raise JalignError(
                    f"{origin} uses mesh axis {axis!r} twice; each mesh axis may split at most "
                    f"one dimension"
                )
            seen.add(axis)


def check_fits(
    spec: PartitionSpec, shape: Sequence[int], mesh: MeshLike, subject: str, origin: str, fix: str
) -> None:
    """`spec` (whose axes `check_axes` accepted) has at most one entry per dimension of `shape`
    and each split dimension divides by the product of its axes' sizes; `subject` names the
    array, `fix` tells the reader what to change."""
    shape = tuple(shape)
    if len(spec) > len(shape):
        raise JalignError(
            f"{origin} gives {subject} {len(spec)} spec entries but it has {len(shape)} "
            f"dimensions; a spec has at most one entry per dimension. {fix}"
        )
    for dim, (size, entry) in enumerate(zip(shape, spec, strict=False)):
        axes = entry_axes(entry)
        parts = math.prod(mesh.shape[axis] for axis in axes)
        if size % parts:
            split = " x ".join(f"{axis}={mesh.shape[axis]}" for axis in axes)
            raise JalignError(
                f"{origin} splits dimension {dim} (size {size}) of {subject} into {parts} parts "
                f"({split}), which does not divide it (mesh {format_mesh(mesh.shape)}). {fix}"
            )

"""Device meshes from config, and placing host batches onto them.

A mesh spec is an ordered mapping of axis name -> size, or its string form
"data=2,fsdp=2,tensor=2". One size may be -1: it takes the devices the others leave. Axes are
`Auto` (GSPMD propagates shardings from the annotated parameters and batches), so model code
needs no per-op sharding annotations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jalign.errors import JalignError

REQUIRED_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def parse_mesh_spec(spec: str | Mapping[str, int]) -> dict[str, int]:
    """ "data=2,fsdp=-1,tensor=1" (or a mapping) -> {"data": 2, "fsdp": -1, "tensor": 1}."""
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        items = []
        for part in (p.strip() for p in str(spec).split(",") if p.strip()):
            name, sep, size = part.partition("=")
            if not sep:
                raise JalignError(f"mesh spec {spec!r}: {part!r} is not of the form axis=size")
            items.append((name.strip(), size.strip()))
    sizes: dict[str, int] = {}
    for name, size in items:
        try:
            value = int(size)
        except (TypeError, ValueError):
            raise JalignError(
                f"mesh spec {spec!r}: size of axis {name!r} is {size!r}; allowed: an int >= 1 or -1"
            ) from None
        if value == 0 or value < -1:
            raise JalignError(
                f"mesh spec {spec!r}: size of axis {name!r} is {value}; allowed: an int >= 1 or -1"
            )
        if name in sizes:
            raise JalignError(f"mesh spec {spec!r}: axis {name!r} appears twice")
        sizes[name] = value
    for name in REQUIRED_AXES:
        sizes.setdefault(name, 1)
    return sizes


def resolve_mesh_sizes(sizes: Mapping[str, int], device_count: int) -> dict[str, int]:
    """Replace a -1 size by the remaining devices; the product must equal `device_count`."""
    wild = [name for name, size in sizes.items() if size == -1]
    if len(wild) > 1:
        raise JalignError(f"mesh {dict(sizes)}: only one axis may have size -1, got {wild}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    resolved = dict(sizes)
    if wild:
        if device_count % fixed:
            raise JalignError(
                f"mesh {dict(sizes)}: the fixed axes use {fixed} devices, which does not divide "
                f"the {device_count} devices available"
            )
        resolved[wild[0]] = device_count // fixed
    if math.prod(resolved.values()) != device_count:
        raise JalignError(
            f"mesh {dict(sizes)} needs {math.prod(resolved.values())} devices but "
            f"{device_count} are available; sizes must multiply to the device count (or use -1)"
        )
    return resolved


def make_mesh(spec: str | Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with `Auto` axes over `devices` (default: all devices, every process)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_mesh_sizes(parse_mesh_spec(spec), len(devices))
    names = tuple(sizes)
    shape = tuple(sizes.values())
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over data x fsdp; the rest replicated."""
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(axes))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Place a host batch (this process's rows) onto the mesh, batch axis over data x fsdp."""
    sharding = batch_sharding(mesh)
    split = math.prod(mesh.shape[a] for a in BATCH_AXES if a in mesh.axis_names)
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if jax.process_count() > 1:
            out[name] = jax.make_array_from_process_local_data(sharding, value)
            continue
        if value.shape[0] % split:
            raise JalignError(
                f"batch field {name!r} has {value.shape[0]} rows, not divisible by the "
                f"{split} data x fsdp shards of the mesh; make the batch size a multiple of {split}"
            )
        out[name] = jax.device_put(value, sharding)
    return out

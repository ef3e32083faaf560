"""Device meshes from config, and placing host batches onto them.

A mesh spec is an ordered mapping of axis name -> size, or its string form
"data=2,fsdp=2,tensor=2". The axes `data`, `fsdp` and `tensor` are always present (size 1 when
not given); more named axes may be added. One size may be -1: it takes the devices the others
leave. Axes are `AxisType.Auto`: XLA's sharding propagation (GSPMD) derives the activations'
shardings from the annotated parameters and batches, so model code needs no per-op annotations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

from jalign.errors import JalignError

REQUIRED_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch (leading) axis is split over both

MeshSpec = str | Mapping[str, int]


def parse_mesh_spec(spec: MeshSpec) -> dict[str, int]:
    """ "data=2,fsdp=-1" (or a mapping) -> {"data": 2, "fsdp": -1, "tensor": 1}, in order."""
    if isinstance(spec, str):
        items = []
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            name, sep, size = part.partition("=")
            if not sep:
                raise JalignError(
                    f"mesh {spec!r}: {part!r} is not of the form axis=size "
                    f"(e.g. data=2,fsdp=2,tensor=2)"
                )
            items.append((name.strip(), size.strip()))
    elif hasattr(spec, "items"):  # a Mapping or an ml_collections ConfigDict
        items = list(spec.items())
    else:
        raise JalignError(
            f"mesh {spec!r}: expected a string like 'data=2,fsdp=2,tensor=2' or a mapping of "
            f"axis name -> size"
        )
    sizes: dict[str, int] = {}
    for name, size in items:
        if not isinstance(name, str) or not name.isidentifier():
            raise JalignError(f"mesh {spec!r}: axis name {name!r} must be an identifier")
        if isinstance(size, bool) or not re.fullmatch(r"-1|[1-9][0-9]*", str(size).strip()):
            raise JalignError(
                f"mesh {spec!r}: size of axis {name!r} is {size!r}; allowed: an int >= 1, or -1 "
                f"for the remaining devices"
            )
        if name in sizes:
            raise JalignError(f"mesh {spec!r}: axis {name!r} appears twice")
        sizes[name] = int(str(size).strip())
    for name in REQUIRED_AXES:
        sizes.setdefault(name, 1)
    return sizes


def resolve_mesh_sizes(sizes: Mapping[str, int], device_count: int) -> dict[str, int]:
    """Replace the -1 size (at most one) by the remaining devices; the sizes must multiply to
    `device_count`."""
    described = ", ".join(f"{name}={size}" for name, size in sizes.items())
    wild = [name for name, size in sizes.items() if size == -1]
    if len(wild) > 1:
        raise JalignError(
            f"mesh {described}: only one axis may have size -1, got {', '.join(wild)}"
        )
    fixed = math.prod(size for size in sizes.values() if size != -1)
    resolved = dict(sizes)
    if wild:
        if device_count % fixed:
            raise JalignError(
                f"mesh {described}: the other axes use {fixed} devices, which does not divide "
                f"the {device_count} devices available"
            )
        resolved[wild[0]] = device_count // fixed
    if math.prod(resolved.values()) != device_count:
        raise JalignError(
            f"mesh {described} needs {math.prod(resolved.values())} devices but {device_count} "
            f"are available; the sizes must multiply to the device count (or set one to -1)"
        )
    return resolved


def make_mesh(spec: MeshSpec, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with `Auto` axes over `devices` (default: all devices of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_mesh_sizes(parse_mesh_spec(spec), len(devices))
    return jax.make_mesh(
        tuple(sizes.values()),
        tuple(sizes),
        axis_types=(AxisType.Auto,) * len(sizes),
        devices=devices,
    )


def abstract_mesh(spec: MeshSpec, device_count: int) -> AbstractMesh:
    """The mesh `make_mesh` would build over `device_count` devices, without devices: enough to
    decide shardings and per-device shapes (`jalign shard-plan --devices N`)."""
    sizes = resolve_mesh_sizes(parse_mesh_spec(spec), device_count)
    return AbstractMesh(
        tuple(sizes.values()), tuple(sizes), axis_types=(AxisType.Auto,) * len(sizes)
    )


def batch_spec(row_axis: int = 0) -> PartitionSpec:
    """The row (batch) axis split over data x fsdp; the other axes replicated. Rows are the
    leading axis, or axis 1 of a stack of batches [steps, rows, ...] (`row_axis=1`)."""
    return PartitionSpec(*(None,) * row_axis, BATCH_AXES)


def batch_sharding(mesh: Mesh, row_axis: int = 0) -> NamedSharding:
    """`batch_spec(row_axis)` on `mesh`."""
    return NamedSharding(mesh, batch_spec(row_axis))


def shard_batch(batch: Mapping[str, Any], mesh: Mesh, row_axis: int = 0) -> dict[str, jax.Array]:
    """Place a host batch onto the mesh, rows (axis `row_axis`) split over data x fsdp.

    `batch` is the global batch, and with several processes every process passes the same one
    (each reads the same data in the same order): `jax.make_array_from_process_local_data` with
    the global shape keeps the rows of the process's own devices, so a multi-process run sees
    exactly the batch a single process with all the devices would. The rows must divide by the
    data x fsdp size.
    """
    sharding = batch_sharding(mesh, row_axis)
    shards = math.prod(mesh.shape[axis] for axis in BATCH_AXES)
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.ndim <= row_axis or value.shape[row_axis] % shards:
            raise JalignError(
                f"batch field {name!r} has shape {value.shape}: its rows must divide by the "
                f"{shards} data x fsdp shards of the mesh; make the batch size a multiple of "
                f"{shards}"
            )
        if jax.process_count() > 1:
            out[name] = jax.make_array_from_process_local_data(sharding, value, value.shape)
        else:
            out[name] = jax.device_put(value, sharding)
    return out


def host_array(x: Any) -> np.ndarray:
    """`x` as a numpy array on this host; an array spread over several processes' devices is
    gathered from all of them (every process must call this together)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

"""`jalign shard-plan MODEL --mesh data=2,fsdp=2,tensor=2`: the plan, computed from shapes only."""

from __future__ import annotations

import math

import jax

from jalign.interop import resolve_model_folder
from jalign.models import abstract_model, load_hf_config
from jalign.sharding import abstract_mesh, format_shard_plan, parse_mesh_spec, shard_plan


def shard_plan_text(
    model: str, mesh_spec: str, devices: int | None = None, scan_layers: bool = False
) -> str:
    """Plan `model`'s parameters on a mesh; needs neither weights nor the devices themselves
    (an abstract mesh of the requested shape stands in for the hardware)."""
    folder = resolve_model_folder(model)
    cfg = load_hf_config(folder, scan_layers=scan_layers)
    _, params = abstract_model(cfg)
    sizes = parse_mesh_spec(mesh_spec)
    if devices is None:  # plan for exactly the devices the spec names (or all, with a -1)
        devices = jax.device_count() if -1 in sizes.values() else math.prod(sizes.values())
    mesh = abstract_mesh(mesh_spec, devices)
    plan = shard_plan(params, mesh, family=cfg.model_type)
    return f"model: {folder} ({cfg.model_type})\n" + format_shard_plan(plan)

"""Meshes, partition rules and shard plans."""

from jalign.sharding.mesh import (
    BATCH_AXES,
    batch_sharding,
    make_mesh,
    parse_mesh_spec,
    resolve_mesh_sizes,
    shard_batch,
)
from jalign.sharding.plan import format_shard_plan
from jalign.sharding.rules import (
    DEFAULT_RULES,
    Placement,
    Rule,
    param_shardings,
    parse_rules,
    parse_spec,
    path_string,
    place,
)

__all__ = [
    "BATCH_AXES",
    "DEFAULT_RULES",
    "Placement",
    "Rule",
    "batch_sharding",
    "format_shard_plan",
    "make_mesh",
    "param_shardings",
    "parse_mesh_spec",
    "parse_rules",
    "parse_spec",
    "path_string",
    "place",
    "resolve_mesh_sizes",
    "shard_batch",
]

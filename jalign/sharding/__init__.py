"""Meshes, partition rules, shard plans and activation sharding constraints."""

from jalign.sharding.constraints import constrain, use_mesh
from jalign.sharding.mesh import (
    BATCH_AXES,
    REQUIRED_AXES,
    abstract_mesh,
    batch_sharding,
    batch_spec,
    host_array,
    make_mesh,
    parse_mesh_spec,
    resolve_mesh_sizes,
    shard_batch,
)
from jalign.sharding.plan import (
    UNMATCHED,
    PlanEntry,
    ShardPlan,
    format_shard_plan,
    human_bytes,
    shard_plan,
)
from jalign.sharding.rules import (
    DEFAULT_RULES,
    FAMILY_RULES,
    Placement,
    Placements,
    Rule,
    param_shardings,
    parse_rules,
    path_string,
    place,
    rule_chain,
)
from jalign.sharding.specs import format_spec, parse_spec

__all__ = [
    "BATCH_AXES",
    "DEFAULT_RULES",
    "FAMILY_RULES",
    "REQUIRED_AXES",
    "UNMATCHED",
    "Placement",
    "Placements",
    "PlanEntry",
    "Rule",
    "ShardPlan",
    "abstract_mesh",
    "batch_sharding",
    "batch_spec",
    "constrain",
    "format_shard_plan",
    "format_spec",
    "host_array",
    "human_bytes",
    "make_mesh",
    "param_shardings",
    "parse_mesh_spec",
    "parse_rules",
    "parse_spec",
    "path_string",
    "place",
    "resolve_mesh_sizes",
    "rule_chain",
    "shard_batch",
    "shard_plan",
    "use_mesh",
]

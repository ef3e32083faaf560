"""Partition rules: an ordered list of `(regex, PartitionSpec)` over parameter paths.

A parameter's path is its keys joined by "/" (`layers/3/attn/q_proj/kernel`). The first rule
whose regex `re.search`es the path gives its spec; rules from the user's config are tried before
the defaults. A parameter no rule matches is replicated and reported. With a scanned layer stack
a leaf has one more (leading, layer) axis than its spec: the spec is prefixed with None.

The defaults are Megatron-style tensor parallelism (Shoeybi et al. 2019) over `tensor`, with
the other matrix dimension sharded over `fsdp` (ZeRO-3 style, Rajbhandari et al. 2020):
column-parallel q/k/v, gate and up projections; row-parallel o and down projections; the
vocabulary dimension of embeddings and the LM head over `tensor`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jalign.errors import JalignError

log = logging.getLogger(__name__)

P = PartitionSpec
Rule = tuple[str, PartitionSpec]

DEFAULT_RULES: tuple[Rule, ...] = (
    (r"(^|/)embed/embedding$", P("tensor", "fsdp")),
    (r"(^|/)pos_embed/embedding$", P()),
    (r"attn/(q|k|v)_proj/kernel$", P("fsdp", "tensor")),
    (r"attn/(q|k|v)_proj/bias$", P("tensor")),
    (r"attn/o_proj/kernel$", P("tensor", "fsdp")),
    (r"attn/o_proj/bias$", P()),
    (r"mlp/(gate|up)_proj/kernel$", P("fsdp", "tensor")),
    (r"mlp/(gate|up)_proj/bias$", P("tensor")),
    (r"mlp/down_proj/kernel$", P("tensor", "fsdp")),
    (r"mlp/down_proj/bias$", P()),
    (r"norm/(scale|bias)$", P()),
    (r"(^|/)lm_head/kernel$", P("fsdp", "tensor")),
    (r"(^|/)score/(kernel|bias)$", P()),
)

# Extra rules per model family, tried after the user's and before the defaults. Every supported
# family maps onto the same parameter names, so none needs its own yet.
FAMILY_RULES: dict[str, tuple[Rule, ...]] = {}


def path_string(path: Sequence[Any]) -> str:
    """A `tree_flatten_with_path` key path -> "a/b/0/c"."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def parse_spec(spec: Any, where: str) -> PartitionSpec:
    """A PartitionSpec, or a list/tuple of axis names / None / tuples of names, as configs write it."""
    if isinstance(spec, PartitionSpec):
        return spec
    if spec is None:
        return P()
    if not isinstance(spec, list | tuple):
        raise JalignError(
            f"{where}: spec {spec!r} must be a list of axis names / None / lists of names"
        )
    entries = []
    for entry in spec:
        if entry is None or isinstance(entry, str):
            entries.append(entry)
        elif isinstance(entry, list | tuple) and all(isinstance(e, str) for e in entry):
            entries.append(tuple(entry))
        else:
            raise JalignError(
                f"{where}: spec entry {entry!r} must be an axis name, None or a list of names"
            )
    return P(*entries)


def parse_rules(rules: Sequence[Any], source: str = "sharding.rules") -> list[Rule]:
    """Rules from config: a list of (regex, spec) pairs; the regex must compile."""
    parsed = []
    for i, rule in enumerate(rules or ()):
        where = f"{source}[{i}]"
        if not isinstance(rule, list | tuple) or len(rule) != 2 or not isinstance(rule[0], str):
            raise JalignError(f"{where}: {rule!r} must be a pair (regex, spec)")
        try:
            re.compile(rule[0])
        except re.error as exc:
            raise JalignError(f"{where}: regex {rule[0]!r} does not compile ({exc})") from None
        parsed.append((rule[0], parse_spec(rule[1], where)))
    return parsed


@dataclasses.dataclass(frozen=True)
class Placement:
    """The decision for one parameter."""

    path: str
    shape: tuple[int, ...]
    dtype: Any
    spec: PartitionSpec
    rule: str | None  # the matched regex; None = unmatched, replicated


def _spec_axes(spec: PartitionSpec) -> list[str]:
    axes = []
    for entry in spec:
        if entry is None:
            continue
        axes.extend(entry if isinstance(entry, tuple) else (entry,))
    return axes


def _check(path: str, shape: tuple[int, ...], spec: PartitionSpec, rule: str, mesh: Mesh) -> None:
    for axis in _spec_axes(spec):
        if axis not in mesh.axis_names:
            raise JalignError(
                f"partition rule {rule!r} -> {spec} names mesh axis {axis!r}, which the mesh "
                f"lacks; mesh axes: {', '.join(mesh.axis_names)}"
            )
    if len(spec) > len(shape):
        raise JalignError(
            f"partition rule {rule!r} gives {path} (shape {shape}) the spec {spec}, which has "
            f"more entries than the parameter has dimensions"
        )
    for dim, entry in zip(shape, spec, strict=False):
        if entry is None:
            continue
        names = entry if isinstance(entry, tuple) else (entry,)
        parts = 1
        for name in names:
            parts *= mesh.shape[name]
        if dim % parts:
            sizes = ", ".join(f"{n}={mesh.shape[n]}" for n in names)
            raise JalignError(
                f"partition rule {rule!r} shards {path} (shape {shape}) with {spec}, but "
                f"dimension {dim} is not divisible by {parts} ({sizes})"
            )


def place(
    params: Any,
    mesh: Mesh,
    user_rules: Sequence[Rule] = (),
    family: str | None = None,
    default_rules: Sequence[Rule] = DEFAULT_RULES,
) -> list[Placement]:
    """Decide every parameter's spec (leaves may be arrays or `jax.ShapeDtypeStruct`s)."""
    rules = [*user_rules, *FAMILY_RULES.get(family or "", ()), *default_rules]
    compiled = [(re.compile(regex), regex, spec) for regex, spec in rules]
    placements = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        path = path_string(key_path)
        shape = tuple(leaf.shape)
        for pattern, regex, spec in compiled:
            if pattern.search(path):
                if (
                    len(spec) == len(shape) - 1
                    and path.startswith("layers/")
                    and not path.split("/")[1].isdigit()
                ):
                    spec = P(None, *spec)  # scanned stack: leading layer axis
                _check(path, shape, spec, regex, mesh)
                placements.append(Placement(path, shape, leaf.dtype, spec, regex))
                break
        else:
            placements.append(Placement(path, shape, leaf.dtype, P(), None))
    unmatched = [p.path for p in placements if p.rule is None]
    if unmatched:
        log.warning(
            "%d parameters match no partition rule and are replicated: %s",
            len(unmatched),
            ", ".join(unmatched[:8]) + (" ..." if len(unmatched) > 8 else ""),
        )
    return placements


def param_shardings(
    params: Any,
    mesh: Mesh,
    user_rules: Sequence[Rule] = (),
    family: str | None = None,
) -> Any:
    """A pytree of `NamedSharding`s with the structure of `params`."""
    placements = place(params, mesh, user_rules, family)
    treedef = jax.tree.structure(params)
    return jax.tree.unflatten(treedef, [NamedSharding(mesh, p.spec) for p in placements])

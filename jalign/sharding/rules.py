"""Partition rules: an ordered list of `(regex, PartitionSpec)` over parameter paths.

A parameter's path is its pytree keys joined by "/" (`layers/3/attn/q_proj/kernel`). The first
rule whose regex `re.search`es the path gives its spec; the user's rules (config
`sharding.rules`) are tried first, then the model family's extra rules, then `DEFAULT_RULES`.
A parameter no rule matches is replicated, listed in `Placements.unmatched` and logged as a
warning. Params may be nested dicts or an `nnx.State` (whose leaves are `nnx.Variable`s), of
arrays or of `jax.ShapeDtypeStruct`s, so shardings can be decided before any weight exists.

Scanned layer stacks: under `layers/` with no layer index the leaves carry a leading [L] axis,
so a spec with one entry fewer than the leaf's rank gets a leading None.

The defaults are Megatron-style tensor parallelism (Shoeybi et al. 2019, arXiv:1909.08053)
over `tensor`, with the other matrix dimension split over `fsdp` (ZeRO-3 style, Rajbhandari et
al. 2020, arXiv:1910.02054): q/k/v, gate and up projections split their output dimension over
`tensor` (column parallel); o and down projections split their input dimension (row parallel);
embeddings and the LM head split the vocabulary. Norms, position embeddings and scalar heads
are small and replicated.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jalign.errors import JalignError
from jalign.sharding.specs import MeshLike, check_axes, check_fits, format_spec, parse_spec

log = logging.getLogger(__name__)

P = PartitionSpec
Rule = tuple[str, PartitionSpec]

DEFAULT_RULES: tuple[Rule, ...] = (
    (r"(^|/)embed/embedding$", P("tensor", "fsdp")),
    (r"(^|/)pos_embed/embedding$", P()),
    (r"(^|/)(q|k|v)_proj/kernel$", P("fsdp", "tensor")),
    (r"(^|/)(q|k|v)_proj/bias$", P("tensor")),
    (r"(^|/)o_proj/kernel$", P("tensor", "fsdp")),
    (r"(^|/)o_proj/bias$", P()),
    (r"(^|/)(gate|up)_proj/kernel$", P("fsdp", "tensor")),
    (r"(^|/)(gate|up)_proj/bias$", P("tensor")),
    (r"(^|/)down_proj/kernel$", P("tensor", "fsdp")),
    (r"(^|/)down_proj/bias$", P()),
    (r"norm/(scale|bias)$", P()),
    (r"(^|/)lm_head/kernel$", P("fsdp", "tensor")),
    (r"(^|/)score/(kernel|bias)$", P()),
)

# Extra rules per model family (`ModelConfig.model_type`), tried after the user's and before the
# defaults. Every supported family (llama, mistral, qwen2, qwen3, gemma2, gpt2) maps its weights
# onto the same parameter names, so none needs its own yet.
FAMILY_RULES: dict[str, tuple[Rule, ...]] = {}

# The key under which a scanned layer stack keeps its [L, ...] leaves (no layer index after it).
SCANNED_STACK = "layers"


def path_string(key_path: Sequence[Any]) -> str:
    """A `tree_flatten_with_path` key path -> "a/b/0/c" (DictKey, GetAttrKey, SequenceKey)."""
    parts = []
    for key in key_path:
        if isinstance(key, jax.tree_util.DictKey | jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        else:
            parts.append(str(key))
    return "/".join(parts)


def parse_rules(rules: Sequence[Any] | None, source: str = "sharding.rules") -> list[Rule]:
    """Rules from config: a list of (regex, spec) pairs (spec as `parse_spec` reads it)."""
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


def rule_chain(user_rules: Sequence[Rule] = (), family: str | None = None) -> list[Rule]:
    """The rules in the order they are tried: the user's, the family's, the defaults."""
    return [*user_rules, *FAMILY_RULES.get(family or "", ()), *DEFAULT_RULES]


@dataclasses.dataclass(frozen=True)
class Placement:
    """The decision for one parameter."""

    path: str
    shape: tuple[int, ...]
    dtype: Any
    spec: PartitionSpec
    rule: str | None  # the matched regex; None: no rule matched, replicated


@dataclasses.dataclass(frozen=True)
class Placements:
    """Every parameter's placement (in leaf order) and the `NamedSharding` pytree.

    `shardings` has the structure of the params: for an `nnx.State` each `nnx.Variable` holds
    its sharding, so `jax.device_put(params, shardings)` and jit's `in_shardings` accept it.
    """

    params: tuple[Placement, ...]
    shardings: Any

    @property
    def unmatched(self) -> list[str]:
        """Paths no rule matched (replicated)."""
        return [p.path for p in self.params if p.rule is None]


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _in_scanned_stack(path: str) -> bool:
    parts = path.split("/")
    return any(
        part == SCANNED_STACK and (i + 1 == len(parts) or not parts[i + 1].isdigit())
        for i, part in enumerate(parts)
    )


def _match(path: str, shape: tuple[int, ...], rules: Sequence[Rule]) -> tuple[PartitionSpec, int]:
    """The spec of the first rule matching `path` (scanned stacks: with a leading None) and the
    rule's index; (P(), -1) when none matches."""
    for index, (regex, spec) in enumerate(rules):
        if re.search(regex, path):
            if len(spec) + 1 == len(shape) and _in_scanned_stack(path):
                spec = P(None, *spec)
            return spec, index
    return P(), -1


def place(
    params: Any, mesh: MeshLike, user_rules: Sequence[Rule] = (), family: str | None = None
) -> Placements:
    """Decide every parameter's spec from the rules and check it fits the parameter and mesh.

    Raises `JalignError` when a rule names an axis the mesh lacks (or one axis twice), or when a
    matched spec has more entries than the parameter has dimensions or splits a dimension into
    parts that do not divide it.
    """
    rules = rule_chain(user_rules, family)
    for regex, spec in rules:
        check_axes(spec, mesh, f"partition rule {regex!r} -> {format_spec(spec)}")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_variable)
    placements = []
    shardings = []
    used = set()
    for key_path, leaf in leaves:
        path = path_string(key_path)
        value = leaf.get_value() if _is_variable(leaf) else leaf
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise JalignError(
                f"parameter {path} is a {type(value).__name__}; params leaves must be arrays or "
                f"jax.ShapeDtypeStruct"
            )
        shape = tuple(value.shape)
        spec, index = _match(path, shape, rules)
        rule = rules[index][0] if index >= 0 else None
        if rule is not None:
            used.add(index)
            check_fits(
                spec,
                shape,
                mesh,
                subject=f"{path} (shape {shape})",
                origin=f"partition rule {rule!r} -> {format_spec(spec)}",
                fix=f"Add a sharding.rules entry (regex, spec) for {path} that fits it.",
            )
        placements.append(Placement(path, shape, value.dtype, spec, rule))
        sharding = NamedSharding(mesh, spec)
        shardings.append(leaf.replace(sharding) if _is_variable(leaf) else sharding)
    result = Placements(tuple(placements), jax.tree_util.tree_unflatten(treedef, shardings))
    if result.unmatched:
        log.warning(
            "%d parameter(s) match no partition rule and are replicated: %s",
            len(result.unmatched),
            ", ".join(result.unmatched),
        )
    for index, (regex, _) in enumerate(user_rules):
        if index not in used:
            log.warning(
                "sharding rule %r matched no parameter of this model (a typo, or shadowed?)", regex
            )
    return result


def param_shardings(
    params: Any, mesh: MeshLike, user_rules: Sequence[Rule] = (), family: str | None = None
) -> Any:
    """The `NamedSharding` pytree of `place` (same structure as `params`)."""
    return place(params, mesh, user_rules, family).shardings

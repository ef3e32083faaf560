"""Declarative config schemas: defaults, allowed values (enums) and range checks.

A trainer declares what its config may contain:

    DPO_SCHEMA = Schema(
        defaults=ConfigDict({"optimizer": {"lr": 1e-6}, "dpo": {"beta": 0.1, "loss_type": "sigmoid"}}),
        choices={"dpo.loss_type": ("sigmoid", "ipo", "hinge")},
        checks={"optimizer.lr": greater_than(0), "dpo.beta": greater_than(0)},
    )

A config file may set any subset of the default keys (and no other key); the values' types are
those of the defaults. `choices` and `checks` are validated after command-line overrides.
A check is skipped for a value of None (an unset optional field).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ml_collections import ConfigDict

from jalign.config.keys import iter_leaves
from jalign.errors import JalignError


@dataclasses.dataclass(frozen=True)
class Check:
    """A predicate on one value plus the requirement it states, e.g. "must be > 0"."""

    predicate: Callable[[Any], bool]
    requirement: str


def greater_than(bound: float) -> Check:
    return Check(lambda v: v > bound, f"must be > {bound}")


def at_least(bound: float) -> Check:
    return Check(lambda v: v >= bound, f"must be >= {bound}")


def between(low: float, high: float) -> Check:
    """Inclusive range [low, high]."""
    return Check(lambda v: low <= v <= high, f"must be in [{low}, {high}]")


@dataclasses.dataclass(frozen=True)
class Schema:
    """Defaults (their keys are the allowed keys), enum `choices` and per-key `checks`."""

    defaults: ConfigDict
    choices: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    checks: Mapping[str, Check] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        known = {key for key, _ in iter_leaves(self.defaults)}
        for key in (*self.choices, *self.checks):
            if key not in known:
                raise ValueError(f"schema names {key!r}, which is not a key of its defaults")


def validate(cfg: ConfigDict, schema: Schema, where: Callable[[str], str]) -> None:
    """Raise JalignError for the first value outside its `choices` or failing its `check`.

    `where(key)` says where a key's value came from (file and line, or the override).
    """
    values = dict(iter_leaves(cfg))
    for key, allowed in schema.choices.items():
        if values[key] not in allowed:
            raise JalignError(
                f"{where(key)}: config key '{key}' has value {values[key]!r}; allowed values: "
                f"{', '.join(repr(a) for a in allowed)}"
            )
    for key, check in schema.checks.items():
        if values[key] is not None and not check.predicate(values[key]):
            raise JalignError(
                f"{where(key)}: config key '{key}' {check.requirement}, got {values[key]!r}"
            )

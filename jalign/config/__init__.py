"""Run configs: Python files exposing `get_config()`, command-line overrides, schemas."""

from jalign.config.loader import (
    CONFIG_JSON,
    apply_override,
    config_hash,
    config_to_dict,
    load_config,
    save_config,
)
from jalign.config.schema import Check, Schema, at_least, between, greater_than

__all__ = [
    "CONFIG_JSON",
    "Check",
    "Schema",
    "apply_override",
    "at_least",
    "between",
    "config_hash",
    "config_to_dict",
    "greater_than",
    "load_config",
    "save_config",
]

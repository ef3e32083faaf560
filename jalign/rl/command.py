"""`jalign ppo` / `jalign grpo`: load a config file with the RL schema, then run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ml_collections

from jalign.config import load_config
from jalign.rl.schema import check_sizes, rl_schema


def load_rl_config(
    command: str, path: str, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    cfg = load_config(path, list(overrides), rl_schema(command))
    check_sizes(cfg)
    return cfg


def run_rl(command: str, path: str, overrides: Sequence[str] = ()) -> tuple[Path, dict]:
    from jalign.rl.loop import train_rl

    return train_rl(load_rl_config(command, path, overrides))

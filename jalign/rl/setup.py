"""Building an RL run's pieces from its config: the reward sources, the value model's
weights, the frozen reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from jalign.errors import JalignError
from jalign.rl.rewards import (
    FUNCTION,
    FunctionReward,
    ModelReward,
    RewardSource,
    import_function,
    parse_spec,
)
from jalign.train.model_setup import LoadedModel, load_model


def load_pretrained(
    cfg: ml_collections.ConfigDict, mesh: Mesh, path: str, head: str
) -> LoadedModel:
    """An HF folder's weights (never random init, whatever `model.init` says) on the mesh."""
    pretrained = ml_collections.ConfigDict(cfg.to_dict())
    pretrained.model.init = "pretrained"
    return load_model(pretrained, mesh, head=head, path=path)


def cast_frozen(params: Any, dtype: str) -> Any:
    """A separate copy of `params` in `dtype` (so donating the trained copy never frees it)."""
    return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.dtype(dtype), copy=True), params)


def reward_sources(
    cfg: ml_collections.ConfigDict, mesh: Mesh, chunk: int, put: Callable[[dict], dict], specs
) -> list[RewardSource]:
    """One source per spec string (see `jalign.rl.rewards`); names are unique."""
    sources: list[RewardSource] = []
    for spec in specs:
        kind, source = parse_spec(spec)
        if kind == FUNCTION:
            name = source.rpartition(":")[2]
            sources.append(FunctionReward(name, import_function(source)))
        else:
            model = load_pretrained(cfg, mesh, source, head="scalar")
            params = cast_frozen(model.params, cfg.rl.frozen_dtype)
            name = "rm" if not any(s.name == "rm" for s in sources) else f"rm{len(sources)}"
            sources.append(ModelReward(name, model.graphdef, params, chunk, put))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise JalignError(f"rewards {names} have repeated names; allowed: each reward once")
    return sources


def value_model(cfg: ml_collections.ConfigDict, mesh: Mesh) -> LoadedModel:
    """PPO's value model: the first reward model's weights ("reward_model", the usual choice
    of InstructGPT / TRL) or the policy's backbone with a fresh scalar head ("policy")."""
    if cfg.rl.value_init == "policy":
        return load_model(cfg, mesh, head="scalar")
    models = [s for kind, s in map(parse_spec, cfg.rl.rewards) if kind != FUNCTION]
    if not models:
        raise JalignError(
            "config key 'rl.value_init'='reward_model' needs a 'model:PATH' entry in "
            "rl.rewards; allowed: add one, or set rl.value_init='policy'"
        )
    return load_pretrained(cfg, mesh, models[0], head="scalar")

"""Building an RL run's pieces from its config: the reward sources, the value model's
weights, the frozen reference.

Frozen models (the reference and the reward models) hold their params in a `FrozenParams`.
With `rl.offload_frozen`, those live in host memory (the `pinned_host` memory kind of their
sharding where the backend has one, as TPU, GPU and, since jax 0.4.3x, CPU do; else numpy
arrays on the host) and `on_device()` puts them back on their device shardings for one forward
phase, then deletes the device copy: between phases the accelerator holds only the policy and
value models, their optimizer states and the sampler's cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
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
from jalign.rl.rollout import Rollout
from jalign.rl.schema import prompt_group
from jalign.train.model_setup import LoadedModel, load_model

HOST_MEMORY = "pinned_host"


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


def to_host(x: jax.Array) -> jax.Array | np.ndarray:
    """`x` in host memory: its sharding with the `pinned_host` memory kind where its devices
    have that memory, else a numpy copy."""
    kinds = {m.kind for d in x.sharding.device_set for m in d.addressable_memories()}
    if HOST_MEMORY in kinds:
        return jax.device_put(x, x.sharding.with_memory_kind(HOST_MEMORY))
    return np.asarray(jax.device_get(x))


class FrozenParams:
    """A frozen model's params (device arrays). With `offload`, they are kept in host memory
    (`to_host`) and `on_device()` yields a device copy on their original shardings for the
    duration of one phase, deleted when it ends; without, it yields the params themselves."""

    def __init__(self, params: Any, offload: bool):
        self.offload = offload
        self.shardings = jax.tree.map(lambda x: x.sharding, params)
        self.params = jax.tree.map(to_host, params) if offload else params

    @contextlib.contextmanager
    def on_device(self) -> Iterator[Any]:
        if not self.offload:
            yield self.params
            return
        params = jax.device_put(self.params, self.shardings)
        try:
            yield params
        finally:
            jax.tree.map(lambda x: x.delete(), params)


@dataclasses.dataclass
class FrozenModelReward(ModelReward):
    """A `ModelReward` whose params (`frozen`) are on the device only while it scores
    (`params` is None otherwise)."""

    frozen: FrozenParams | None = None

    def __call__(self, rollout: Rollout) -> np.ndarray:
        with self.frozen.on_device() as self.params:
            try:
                return super().__call__(rollout)
            finally:
                self.params = None


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
            frozen = FrozenParams(
                cast_frozen(model.params, cfg.rl.frozen_dtype), cfg.rl.offload_frozen
            )
            name = "rm" if not any(s.name == "rm" for s in sources) else f"rm{len(sources)}"
            group = prompt_group(cfg.rl)
            sources.append(FrozenModelReward(name, model.graphdef, None, chunk, put, group, frozen))
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

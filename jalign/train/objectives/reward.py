"""Reward modeling (Bradley-Terry) with a scalar head, and the post-training reward centring."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jalign.data import PREFERENCE
from jalign.losses import bradley_terry_loss
from jalign.sharding import shard_batch
from jalign.train.forward import paired, sequence_rewards
from jalign.train.objective import Objective, RunContext


def make_reward_loss(ctx: RunContext):
    margin = ctx.config.rm.margin
    center_coef = ctx.config.rm.center_coef

    def loss_fn(params, frozen, batch, rng):
        del frozen, rng
        rewards = sequence_rewards(ctx.graphdef, params, paired(batch))
        chosen, rejected = jnp.split(rewards, 2)
        margins = jnp.full_like(chosen, margin)
        loss, metrics, weight = bradley_terry_loss(
            chosen, rejected, margins, center_coef, batch["example_mask"]
        )
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn


def center_rewards(ctx: RunContext, state: Any, evaluator: Any) -> tuple[Any, dict]:
    """Shift the score bias so the mean reward over the reference set is 0 (the RLHF reward
    normalisation of Ziegler et al. 2019 / Ouyang et al. 2022). The reference set is the eval
    split when there is one, else the training data's first batches."""
    if not (ctx.config.rm.center_after_training and evaluator.enabled):
        return state.params, {}
    reward_fn = jax.jit(lambda p, b: sequence_rewards(ctx.graphdef, p, paired(b)))
    total, count = 0.0, 0.0
    for batch in evaluator.batches():
        arrays = {k: v for k, v in batch.items() if hasattr(v, "shape")}
        rewards = jax.device_get(reward_fn(state.params, shard_batch(arrays, ctx.mesh)))
        weights = jnp.concatenate([batch["example_mask"]] * 2)
        total += float(jnp.sum(rewards * weights))
        count += float(jnp.sum(weights))
    mean = total / max(count, 1.0)
    params = jax.tree.map(lambda x: x, state.params)
    params["score"]["bias"] = params["score"]["bias"] - mean
    return params, {"rm/reward_mean_before_centering": mean}


REWARD_OBJECTIVE = Objective(
    name="rm",
    data_kind=PREFERENCE,
    head="scalar",
    defaults={
        "margin": 0.0,  # required reward gap: -log sigmoid(r_c - r_r - margin)
        "center_coef": 0.0,  # coef * (r_c + r_r)^2 keeps rewards centred (Eisenstein et al. 2023)
        "center_after_training": True,  # shift the bias so the mean reference reward is 0
    },
    make_loss=make_reward_loss,
    finalize=center_rewards,
)

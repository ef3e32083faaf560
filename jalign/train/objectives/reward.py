"""Reward modeling (Bradley-Terry) with a scalar head, and the post-training reward centring.

`rm.data_kind` picks the records: "preference" pairs {"prompt", "chosen", "rejected"}, or
"ranked" {"prompt", "responses": [k texts], "scores": [k numbers]}, trained on all k(k-1)/2
comparisons of each record at once (InstructGPT's K-wise loss: one forward pass per response,
see `jalign.losses.ranked_bradley_terry_loss`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jalign.data import PREFERENCE, RANKED
from jalign.losses import pairs_as_rankings, ranked_bradley_terry_loss
from jalign.sharding import shard_batch
from jalign.train.forward import PAIRS, paired, ranked_groups, ranked_rows, sequence_rewards
from jalign.train.objective import Objective, RunContext

DATA_KINDS = (PREFERENCE, RANKED)


def data_kind(config: ml_collections.ConfigDict) -> str:
    return config.rm.data_kind


def response_rewards(
    graphdef: nnx.GraphDef, params: Any, batch: dict, share_prompt: bool
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(rewards, scores, response_mask) [B, k] of a ranked batch's k responses (the mask marks
    the real ones of records padded to k), or of a preference batch's (chosen, rejected) with
    scores (1, 0) and no mask: every response in one forward pass, with `share_prompt` each
    record's prompt once (`jalign.train.forward.shared_prompt_hidden`)."""
    if "scores" in batch:
        b, k = batch["scores"].shape
        groups = ranked_groups(batch) if share_prompt else None
        rewards = sequence_rewards(graphdef, params, ranked_rows(batch), groups)
        return rewards.reshape(b, k), batch["scores"], batch["response_mask"]
    groups = PAIRS if share_prompt else None
    pairs = jnp.split(sequence_rewards(graphdef, params, paired(batch), groups), 2)
    return *pairs_as_rankings(*pairs), None


def make_reward_loss(ctx: RunContext):
    margin = ctx.config.rm.margin
    center_coef = ctx.config.rm.center_coef
    share_prompt = ctx.config.rm.share_prompt

    def loss_fn(params, frozen, batch, rng):
        del frozen, rng
        rewards, scores, real = response_rewards(ctx.graphdef, params, batch, share_prompt)
        loss, metrics, weight = ranked_bradley_terry_loss(
            rewards, scores, margin, center_coef, batch["example_mask"], real
        )
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn


def center_rewards(ctx: RunContext, state: Any, evaluator: Any) -> tuple[Any, dict]:
    """Shift the score bias so the mean reward over the reference set is 0 (the RLHF reward
    normalisation of Ziegler et al. 2019 / Ouyang et al. 2022). The reference set is the eval
    split when there is one, else the training data's first batches."""
    if not (ctx.config.rm.center_after_training and evaluator.enabled):
        return state.params, {}
    share_prompt = ctx.config.rm.share_prompt
    reward_fn = jax.jit(lambda p, b: response_rewards(ctx.graphdef, p, b, share_prompt)[0])
    total, count = 0.0, 0.0
    for batch in evaluator.batches():
        arrays = {k: v for k, v in batch.items() if hasattr(v, "shape")}
        rewards = jax.device_get(reward_fn(state.params, shard_batch(arrays, ctx.mesh)))
        real = batch["example_mask"][:, None] * batch.get("response_mask", 1.0)
        weights = jnp.broadcast_to(real, rewards.shape)
        total += float(jnp.sum(rewards * weights))
        count += float(jnp.sum(weights))
    mean = total / max(count, 1.0)
    params = jax.tree.map(lambda x: x, state.params)
    params["score"]["bias"] = params["score"]["bias"] - mean
    return params, {"rm/reward_mean_before_centering": mean}


REWARD_OBJECTIVE = Objective(
    name="rm",
    data_kind=data_kind,
    head="scalar",
    defaults={
        "data_kind": PREFERENCE,  # or "ranked": k scored responses per record
        "margin": 0.0,  # required reward gap: -log sigmoid(r_c - r_r - margin)
        "center_coef": 0.0,  # coef * (r_c + r_r)^2 keeps rewards centred (Eisenstein et al. 2023)
        "center_after_training": True,  # shift the bias so the mean reference reward is 0
        "share_prompt": True,  # a record's prompt runs through the model once
    },
    make_loss=make_reward_loss,
    finalize=center_rewards,
    choices={"data_kind": DATA_KINDS},
)

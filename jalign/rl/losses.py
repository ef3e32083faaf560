"""The loss functions of the RL update steps, in `jalign.train.state`'s
`loss_fn(params, frozen, batch, rng) -> (loss, {"metrics", "weight"})` form.

Policy (Schulman et al. 2017, with the options of `ppo_policy_loss`):
    L = agg(clipped surrogate) - c_ent agg(H) [+ beta agg(KL_k(pi || pi_ref)) with kl_in = "loss"]
    [+ c_ptx L_SFT(ptx batch)]   (PPO-ptx, Ouyang et al. 2022: keeps pretraining/SFT skills)
Value (clipped, as OpenAI baselines / Ziegler et al. 2019):
    L_V = c_v agg(0.5 max((V - R)^2, (V_clip - R)^2))
`agg` is the configured `aggregate` mode over completion tokens. The batch carries old_logp,
ref_logp, advantages, old_values and returns [B, N] per row, ptx_* (an SFT batch) with PPO-ptx, kl_coef as a [B] column (so the
coefficient is traced, not baked into the compiled step) and on_policy [B]: 1 on the first
minibatch of an iteration's first epoch, whose params are still those that sampled the rollout.
There the old log-probs are the step's own log-probs, detached (as verl does on-policy): the
same quantity as the separately recomputed `old_logp`, without the ~1 ulp difference XLA's
different fusion of a forward pass under `value_and_grad` leaves, so the ratio is exactly 1.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jalign.losses import (
    aggregate,
    kl_estimate,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    sft_loss,
)
from jalign.rl.forward import policy_logprobs, token_values
from jalign.rl.schema import prompt_group
from jalign.train.forward import row_keys, target_logprobs
from jalign.train.state import LossFn


def make_policy_loss(graphdef: nnx.GraphDef, rl: ml_collections.ConfigDict) -> LossFn:
    mode, group = rl.loss_aggregation, prompt_group(rl)

    def loss_fn(params: Any, frozen: Any, batch: dict, rng: Any):
        del frozen, rng
        mask = batch["completion_mask"]
        logp, entropy = policy_logprobs(graphdef, params, batch, rl.temperature, group)
        on_policy = batch["on_policy"][:, None] > 0
        old_logp = jnp.where(on_policy, jax.lax.stop_gradient(logp), batch["old_logp"])
        per_token, stats = ppo_policy_loss(
            logp,
            old_logp,
            batch["advantages"],
            mask,
            rl.clip_eps,
            rl.clip_eps_high or None,
            rl.dual_clip or None,
        )
        policy_loss, weight = aggregate(per_token, mask, mode)
        entropy_mean, _ = aggregate(entropy, mask, mode)
        loss = policy_loss - rl.entropy_coef * entropy_mean
        kl = kl_estimate(logp, batch["ref_logp"], rl.kl_estimator)
        kl_mean, _ = aggregate(kl, mask, mode)
        if rl.kl_in == "loss":
            loss = loss + batch["kl_coef"][0] * kl_mean
        ptx_metrics = {}
        if rl.ptx_coef > 0:
            ptx = {key: batch[f"ptx_{key}"] for key in row_keys(batch, "ptx_")}
            ptx_out = target_logprobs(graphdef, params, ptx)
            ptx_loss, _, _ = sft_loss(ptx_out.logps, ptx_out.mask)
            loss = loss + rl.ptx_coef * ptx_loss
            ptx_metrics["loss/ptx"] = ptx_loss
        log_ratio = (logp - old_logp) * mask
        metrics = {
            "loss/policy": policy_loss,
            "policy/approxkl": stats["approxkl"],
            "policy/clipfrac": stats["clipfrac"],
            "policy/entropy": entropy_mean,
            "policy/kl_ref": kl_mean,
            "policy/ratio_mean": masked_mean(jnp.exp(log_ratio), mask),
            "policy/ratio_max_dev": jnp.max(jnp.abs(jnp.expm1(log_ratio))),
            **({"policy/dual_clipfrac": stats["dual_clipfrac"]} if rl.dual_clip else {}),
            **ptx_metrics,
        }
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn


def make_value_loss(graphdef: nnx.GraphDef, rl: ml_collections.ConfigDict) -> LossFn:
    mode, group = rl.loss_aggregation, prompt_group(rl)

    def loss_fn(params: Any, frozen: Any, batch: dict, rng: Any):
        del frozen, rng
        mask = batch["completion_mask"]
        values = token_values(graphdef, params, batch, group)
        per_token, stats = ppo_value_loss(
            values, batch["old_values"], batch["returns"], mask, rl.value_clip_eps
        )
        value_loss, weight = aggregate(per_token, mask, mode)
        metrics = {
            "loss/value": value_loss,
            "val/clipfrac": stats["value_clipfrac"],
            "val/vpred": masked_mean(values, mask),
        }
        return rl.value_coef * value_loss, {"metrics": metrics, "weight": weight}

    return loss_fn

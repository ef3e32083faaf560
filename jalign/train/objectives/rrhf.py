"""RRHF in the DPO trainer (`dpo.loss_type = "rrhf"`): k scored responses per prompt, ranked
by length-normalised policy log-probability, plus the NLL of the best one. Reference-free.

A ranked batch [B, k, T] runs through the policy as one [B k, T] forward pass (each record's
prompt once with `dpo.share_prompt`); the best response is the highest-scoring real one (the
first on ties; `response_mask` marks the padding of records with fewer than k responses) and
its NLL is the mean token NLL -log pi(y_best | x) / |y_best|.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from jalign.losses import best_and_worst, rrhf_loss
from jalign.train.forward import ranked_groups, ranked_rows
from jalign.train.objective import RunContext
from jalign.train.objectives.completions import completion_logps


def make_rrhf_loss(ctx: RunContext) -> Callable:
    chunk = ctx.config.dpo.logprob_chunk
    share_prompt = ctx.config.dpo.share_prompt
    rank_weight = ctx.config.dpo.rank_weight

    def loss_fn(params, frozen, batch, rng):
        del frozen, rng
        b, k = batch["input_ids"].shape[:2]
        groups = ranked_groups(batch) if share_prompt else None
        out = completion_logps(ctx.graphdef, params, ranked_rows(batch), chunk, groups)
        per_token = (out.logps / jnp.maximum(out.lengths, 1.0)).reshape(b, k)
        real = batch["response_mask"]
        best, _ = best_and_worst(batch["scores"], real)
        best_nll = -jnp.take_along_axis(per_token, best[:, None], axis=1)[:, 0]
        loss, metrics, weight = rrhf_loss(
            per_token, batch["scores"], best_nll, rank_weight, batch["example_mask"], real
        )
        w = batch["example_mask"]
        # The share of rows whose best response is also the policy's most likely (normalised).
        likeliest, _ = best_and_worst(per_token, real)
        top = (likeliest == best).astype(jnp.float32)
        metrics["rewards/accuracies"] = jnp.sum(w * top) / jnp.maximum(jnp.sum(w), 1.0)
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn

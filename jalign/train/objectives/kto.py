"""KTO in the DPO trainer (`dpo.loss_type = "kto"`): unpaired desirable / undesirable
completions and the reference point estimated on mismatched prompt / completion pairs.

Each batch of unpaired rows (x_i, y_i) runs through policy and reference together with the
mismatched rows (x_i, y_{i+1}) (row i's prompt followed by the next real row's completion,
cyclically), one concatenated [2B, T] forward pass each. The mismatched rows give KTO's
reference point z0 = max(0, mean_i log pi(y_{i+1}|x_i) - log pi_ref(y_{i+1}|x_i)), the
in-batch KL estimate of Ethayarajh et al. 2024 (TRL shifts completions the same way). A
mismatched row longer than the batch width T is cut at T.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jalign.losses import KTOLossConfig, kto_loss
from jalign.train.forward import row_keys
from jalign.train.objective import RunContext
from jalign.train.objectives.completions import completion_logps


def mismatched_rows(rows: dict, example_mask: jax.Array) -> dict:
    """Row i's prompt followed by the completion of row src(i) = i + 1 (wrapping to 0 after the
    last real row), for right-padded, unpacked rows [B, T] whose `loss_mask` starts at the
    completion. Rows past the last real one (example_mask 0) pair with row 0."""
    ids, mask, seg = rows["input_ids"], rows["loss_mask"], rows["segment_ids"]
    b, t = ids.shape
    n_real = jnp.sum(example_mask > 0)
    src = jnp.where(jnp.arange(b) + 1 < n_real, jnp.arange(b) + 1, 0)
    prompt_len = jnp.argmax(mask > 0, axis=1)  # first completion token
    length = jnp.sum(seg > 0, axis=1)
    pos = jnp.arange(t)[None, :]
    in_prompt = pos < prompt_len[:, None]
    # Position t >= prompt_len[i] reads the source row at prompt_len[src] + (t - prompt_len[i]).
    read = pos - prompt_len[:, None] + prompt_len[src][:, None]
    valid = in_prompt | (read < length[src][:, None])
    read = jnp.clip(read, 0, t - 1)
    take = lambda x: jnp.take_along_axis(x[src], read, axis=1)  # noqa: E731
    new_ids = jnp.where(in_prompt, ids, take(ids))
    new_mask = jnp.where(in_prompt, 0.0, take(mask))
    return {
        "input_ids": jnp.where(valid, new_ids, 0),
        "positions": jnp.where(valid, jnp.broadcast_to(pos, (b, t)), 0),
        "segment_ids": valid.astype(seg.dtype),
        "loss_mask": jnp.where(valid, new_mask, 0.0),
    }


def kto_config(ctx: RunContext) -> KTOLossConfig:
    dpo = ctx.config.dpo
    return KTOLossConfig(
        beta=dpo.beta,
        desirable_weight=dpo.desirable_weight,
        undesirable_weight=dpo.undesirable_weight,
    )


def make_kto_loss(ctx: RunContext) -> Callable:
    cfg = kto_config(ctx)
    chunk = ctx.config.dpo.logprob_chunk

    def both(params, batch):
        rows = {k: batch[k] for k in row_keys(batch)}
        # A mismatched row's completion starts where its own row's did and is no longer than
        # the batch's longest, so it keeps its row's target columns.
        kl_rows = rows | mismatched_rows(rows, batch["example_mask"])
        joined = {k: jnp.concatenate([rows[k], kl_rows[k]]) for k in rows}
        return jnp.split(completion_logps(ctx.graphdef, params, joined, chunk).logps, 2)

    def loss_fn(params, frozen, batch, rng):
        del rng
        policy, policy_kl = both(params, batch)
        ref, ref_kl = jax.lax.stop_gradient(both(frozen["ref_params"], batch))
        loss, metrics, weight = kto_loss(
            policy,
            ref,
            policy_kl,
            ref_kl,
            batch["labels"],
            cfg,
            example_mask=batch["example_mask"],
        )
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn

"""Supervised fine-tuning: cross-entropy on the target tokens (completion / assistant turns)."""

from __future__ import annotations

import jax.numpy as jnp

from jalign.data import SFT
from jalign.losses import sft_loss, token_accuracy
from jalign.train.forward import sequence_logprobs
from jalign.train.objective import Objective, RunContext

NORMALIZATIONS = ("token", "sequence")


def make_sft_loss(ctx: RunContext):
    normalization = ctx.config.sft.loss_normalization
    chunk = ctx.config.sft.logprob_chunk

    def loss_fn(params, frozen, batch, rng):
        del frozen, rng
        logps, logits = sequence_logprobs(
            ctx.graphdef, params, batch, chunk, with_logits=chunk <= 0
        )
        mask = batch["loss_mask"] * batch["example_mask"][:, None]
        loss, metrics, weight = sft_loss(logps, mask, normalization)
        if logits is not None:
            metrics["accuracy"] = token_accuracy(logits, batch["input_ids"], mask)
        metrics["tokens"] = jnp.sum(mask)
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn


SFT_OBJECTIVE = Objective(
    name="sft",
    data_kind=SFT,
    head="lm",
    defaults={
        "loss_normalization": "token",  # "token": mean over all target tokens; "sequence": per row
        "logprob_chunk": 0,  # > 0: compute logprobs in sequence chunks (large vocabularies)
    },
    make_loss=make_sft_loss,
    choices={"loss_normalization": NORMALIZATIONS},
)

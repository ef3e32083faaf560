"""Supervised fine-tuning: cross-entropy on the target tokens (completion / assistant turns)."""

from __future__ import annotations

import jax.numpy as jnp

from jalign.data import SFT
from jalign.losses import masked_mean, sft_loss
from jalign.train.forward import target_logprobs
from jalign.train.objective import Objective, RunContext
from jalign.train.state import LossFn

NORMALIZATIONS = ("token", "sequence")


def make_sft_loss(ctx: RunContext, section: str = "sft") -> LossFn:
    """The SFT loss with the options of config section `section` (`SFT_DEFAULTS` keys)."""
    normalization = ctx.config[section].loss_normalization
    chunk = ctx.config[section].logprob_chunk

    def loss_fn(params, frozen, batch, rng):
        del frozen, rng
        out = target_logprobs(ctx.graphdef, params, batch, chunk)
        mask = out.mask * batch["example_mask"][:, None]
        loss, metrics, weight = sft_loss(out.logps, mask, normalization)
        if out.hits is not None:  # from the same pass over the logits as the log-probs
            metrics["accuracy"] = masked_mean(out.hits.astype(jnp.float32), mask)
        metrics["tokens"] = jnp.sum(mask)
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn


SFT_DEFAULTS = {
    "loss_normalization": "token",  # "token": mean over all target tokens; "sequence": per row
    "logprob_chunk": 0,  # > 0: compute logprobs in sequence chunks (large vocabularies)
}
SFT_CHOICES = {"loss_normalization": NORMALIZATIONS}

SFT_OBJECTIVE = Objective(
    name="sft",
    data_kind=SFT,
    head="lm",
    defaults=SFT_DEFAULTS,
    make_loss=make_sft_loss,
    choices=SFT_CHOICES,
)

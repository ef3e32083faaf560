"""Supervised fine-tuning cross-entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jalign.errors import JalignError
from jalign.losses.logprobs import masked_mean

SFT_NORMALIZATIONS = ("token", "sequence")


def sft_loss(
    logps: jax.Array, mask: jax.Array, normalization: str = "token"
) -> tuple[jax.Array, dict, jax.Array]:
    """Negative log-likelihood of the target tokens.

    token:    L = -sum_{i,t} m_it log p_it / sum_{i,t} m_it   (every target token weighs the same)
    sequence: L = -(1/N) sum_i [sum_t m_it log p_it / sum_t m_it]  (every sequence weighs the same;
              N counts rows with at least one target)

    Returns (loss, metrics, weight) where weight is the number of units averaged over (tokens or
    sequences), for exact gradient accumulation.
    """
    if normalization == "token":
        weight = jnp.sum(mask)
        loss = -masked_mean(logps, mask)
    elif normalization == "sequence":
        has_targets = (jnp.sum(mask, axis=1) > 0).astype(jnp.float32)
        per_row = -masked_mean(logps, mask, axis=1)
        weight = jnp.sum(has_targets)
        loss = jnp.sum(per_row * has_targets) / jnp.maximum(weight, 1.0)
    else:
        raise JalignError(
            f"sft.loss_normalization={normalization!r}; allowed: {', '.join(SFT_NORMALIZATIONS)}"
        )
    return loss, {"nll": -masked_mean(logps, mask)}, weight


def token_accuracy(logits: jax.Array, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Fraction of target tokens t where argmax(logits[t-1]) == input_ids[t]."""
    predicted = jnp.argmax(logits[:, :-1], axis=-1)
    correct = (predicted == input_ids[:, 1:]).astype(jnp.float32)
    return masked_mean(correct, mask[:, 1:])

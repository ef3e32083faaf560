"""Sequence log-probabilities of completions: the one forward pass every DPO-family loss uses.

Rows are right-padded training rows (`input_ids`, `positions`, `segment_ids`, `loss_mask`
[N, T], the mask marking completion tokens); the result sums token log-probs over each row's
completion, log pi(y | x) = sum_t mask_t log p(y_t | x, y_<t).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jalign.losses.logprobs import masked_sum
from jalign.train.forward import sequence_logprobs


class CompletionLogps(NamedTuple):
    """Per row [N]: summed completion log-probs, completion lengths (tokens) and the mean logit
    over the completion's predicting positions (None when log-probs are chunked)."""

    logps: jax.Array
    lengths: jax.Array
    mean_logits: jax.Array | None


def completion_logps(
    graphdef: nnx.GraphDef, params: Any, rows: dict, chunk: int = 0
) -> CompletionLogps:
    """Summed completion log-probs of every row; `chunk > 0` computes them in sequence chunks
    (no [N, T, V] float32 tensor; see `jalign.train.forward.sequence_logprobs`)."""
    mask = rows["loss_mask"]
    token_logps, logits = sequence_logprobs(graphdef, params, rows, chunk, with_logits=chunk <= 0)
    lengths = jnp.sum(mask, axis=1)
    mean_logits = None
    if logits is not None:
        # logits[t-1] scored token t: shift the mask to the predicting positions.
        token_means = jnp.mean(logits, axis=-1)[:, :-1]
        mean_logits = jnp.sum(token_means * mask[:, 1:], 1) / jnp.maximum(lengths, 1.0)
    return CompletionLogps(masked_sum(token_logps, mask, axis=1), lengths, mean_logits)

"""Sequence log-probabilities of completions: the one forward pass every DPO-family loss uses.

Rows are right-padded training rows (`input_ids`, `positions`, `segment_ids`, `loss_mask`
[N, T], the mask marking completion tokens); the result sums token log-probs over each row's
completion, log pi(y | x) = sum_t mask_t log p(y_t | x, y_<t).

The LM head and the log-softmax run only at the rows' `target_columns` when they have them
(see `jalign.train.forward.target_hidden`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jalign.losses import chunked_token_logprobs, masked_mean, masked_sum, token_logprobs
from jalign.models import project
from jalign.train.forward import target_hidden


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
    of the window (no [N, W, V] float32 tensor; see `jalign.losses.chunked_token_logprobs`)."""
    hidden, targets, mask = target_hidden(graphdef, params, rows)
    unembed = lambda h: project(graphdef, params, h)  # noqa: E731
    mean_logits = None
    if chunk > 0:
        token_logps = chunked_token_logprobs(hidden, unembed, targets, chunk)
    else:
        logits = unembed(hidden)
        token_logps = token_logprobs(logits, targets)
        mean_logits = masked_mean(jnp.mean(logits, axis=-1), mask, axis=1)
    return CompletionLogps(masked_sum(token_logps, mask, axis=1), jnp.sum(mask, 1), mean_logits)

"""Sequence log-probabilities of completions: the one forward pass every DPO-family loss uses.

Rows are right-padded training rows (`input_ids`, `positions`, `segment_ids`, `loss_mask`
[N, T], the mask marking completion tokens); the result sums token log-probs over each row's
completion, log pi(y | x) = sum_t mask_t log p(y_t | x, y_<t).

The LM head and the log-softmax run only at the rows' `target_columns` when they have them
(see `jalign.train.forward.target_logprobs`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jalign.losses import masked_mean, masked_sum
from jalign.train.forward import PromptGroups, target_logprobs


class CompletionLogps(NamedTuple):
    """Per row [N]: summed completion log-probs, completion lengths (tokens) and the mean logit
    over the completion's predicting positions (None when log-probs are chunked)."""

    logps: jax.Array
    lengths: jax.Array
    mean_logits: jax.Array | None


def completion_logps(
    graphdef: nnx.GraphDef,
    params: Any,
    rows: dict,
    chunk: int = 0,
    groups: PromptGroups | None = None,
) -> CompletionLogps:
    """Summed completion log-probs of every row (`target_logprobs`, chunked when `chunk > 0`;
    `groups` of rows that share their prompt run it once, see
    `jalign.train.forward.shared_prompt_hidden`)."""
    out = target_logprobs(graphdef, params, rows, chunk, groups=groups)
    mean_logits = None
    if out.logits is not None:
        mean_logits = masked_mean(jnp.mean(out.logits, axis=-1), out.mask, axis=1)
    return CompletionLogps(
        masked_sum(out.logps, out.mask, axis=1), jnp.sum(out.mask, 1), mean_logits
    )

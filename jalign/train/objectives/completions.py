"""Sequence log-probabilities of completions: the one forward pass every DPO-family loss uses.

Rows are right-padded training rows (`input_ids`, `positions`, `segment_ids`, `loss_mask`
[N, T], the mask marking completion tokens); the result sums token log-probs over each row's
completion, log pi(y | x) = sum_t mask_t log p(y_t | x, y_<t).

With `target_columns` [N, W] in the rows (the collator adds them: `jalign.data.batching`), the
LM head and the log-softmax run only at those W columns of each row, the ones that predict its
completion, instead of at all T: a prompt's positions need hidden states (the completion attends
to them) but no logits. Without them, every column but the last is projected.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jalign.data.schemas import TARGET_COLUMNS
from jalign.losses import chunked_token_logprobs, masked_mean, masked_sum, token_logprobs
from jalign.models import apply, project


class CompletionLogps(NamedTuple):
    """Per row [N]: summed completion log-probs, completion lengths (tokens) and the mean logit
    over the completion's predicting positions (None when log-probs are chunked)."""

    logps: jax.Array
    lengths: jax.Array
    mean_logits: jax.Array | None


def predicting_window(hidden: jax.Array, rows: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(hidden [N, W, D], targets [N, W], mask [N, W]): the hidden states at the columns that
    predict targets (`target_columns`, or every column but the last), aligned with the tokens
    they predict and those tokens' loss mask."""
    ids, mask = rows["input_ids"], rows["loss_mask"]
    columns = rows.get(TARGET_COLUMNS)
    if columns is None:
        return hidden[:, :-1], ids[:, 1:], mask[:, 1:]
    take = lambda x, c: jnp.take_along_axis(x, c, axis=1)  # noqa: E731
    return take(hidden, columns[..., None]), take(ids, columns + 1), take(mask, columns + 1)


def completion_logps(
    graphdef: nnx.GraphDef, params: Any, rows: dict, chunk: int = 0
) -> CompletionLogps:
    """Summed completion log-probs of every row; `chunk > 0` computes them in sequence chunks
    of the window (no [N, W, V] float32 tensor; see `jalign.losses.chunked_token_logprobs`)."""
    ids, pos, seg = rows["input_ids"], rows["positions"], rows["segment_ids"]
    hidden, _ = apply(graphdef, params, ids, pos, seg, return_hidden=True)
    hidden, targets, mask = predicting_window(hidden, rows)
    unembed = lambda h: project(graphdef, params, h)  # noqa: E731
    mean_logits = None
    if chunk > 0:
        token_logps = chunked_token_logprobs(hidden, unembed, targets, chunk)
    else:
        logits = unembed(hidden)
        token_logps = token_logprobs(logits, targets)
        mean_logits = masked_mean(jnp.mean(logits, axis=-1), mask, axis=1)
    return CompletionLogps(masked_sum(token_logps, mask, axis=1), jnp.sum(mask, 1), mean_logits)

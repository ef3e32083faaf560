"""Forward passes shared by objectives: per-token logprobs, paired (chosen + rejected) and
ranked (k responses) passes in one concatenated call, and scalar heads read at each sequence's
last real token."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jalign.data.schemas import TARGET_COLUMNS
from jalign.losses import chunked_token_logprobs, last_token_index, token_logprobs
from jalign.models import KVCache, apply, project, take_columns

SEQUENCE_KEYS = ("input_ids", "positions", "segment_ids", "loss_mask")
ROW_KEYS = (*SEQUENCE_KEYS, TARGET_COLUMNS)  # a training row's arrays; the last is optional


class TargetLogprobs(NamedTuple):
    """Per target column [N, W] (see `target_logprobs`): log-probs of the tokens predicted there,
    their loss mask, and, when not chunked, the logits [N, W, V] and whether each target is
    the top-ranked token (`token_logprobs`' hits, for token accuracy)."""

    logps: jax.Array
    mask: jax.Array
    logits: jax.Array | None
    hits: jax.Array | None


def target_logprobs(
    graphdef: nnx.GraphDef,
    params: Any,
    rows: dict,
    chunk: int = 0,
    temperature: float | jax.Array = 1.0,
    pairs_share_prompt: bool = False,
) -> TargetLogprobs:
    """log p(target | context) at the columns that predict target tokens, of
    softmax(logits / temperature).

    With `target_columns` [N, W] in the rows (the collator adds them: `jalign.data.batching`),
    those W columns of each row; without, every column but the last. A prompt's columns need
    keys and values (the targets attend to them) but no logits, so the last block's queries
    and MLP, the LM head and the log-softmax run on W columns instead of T (`apply`'s
    `read_columns`). `chunk > 0` computes them in chunks of the window (no [N, W, V] float32
    tensor at once; see `jalign.losses.chunked_token_logprobs`). `pairs_share_prompt`: the
    rows are `paired` rows whose pairs share their prompt, run once per pair
    (`shared_prompt_hidden`; no effect without a window shorter than the row).
    """
    ids, mask = rows["input_ids"], rows["loss_mask"]
    columns = rows.get(TARGET_COLUMNS)
    if columns is None or columns.shape[1] == ids.shape[1] - 1:  # a full window starts at 0
        read, targets, mask = slice(None, -1), ids[:, 1:], mask[:, 1:]
    else:
        read, targets, mask = (
            columns,
            take_columns(ids, columns + 1),
            take_columns(mask, columns + 1),
        )
    if pairs_share_prompt and not isinstance(read, slice):
        hidden = shared_prompt_hidden(graphdef, params, rows)
    else:
        hidden, _ = apply(
            graphdef,
            params,
            ids,
            rows["positions"],
            rows["segment_ids"],
            return_hidden=True,
            read_columns=read,
        )
    unembed = lambda h: project(graphdef, params, h)  # noqa: E731
    if chunk > 0:
        return TargetLogprobs(
            chunked_token_logprobs(hidden, unembed, targets, chunk, temperature), mask, None, None
        )
    logits = unembed(hidden)
    logps, hits = token_logprobs(logits, targets, temperature, with_hits=True)
    return TargetLogprobs(logps, mask, logits, hits)


def shared_prompt_hidden(graphdef: nnx.GraphDef, params: Any, rows: dict) -> jax.Array:
    """Final hidden states [2B, W, D] at the `target_columns` [2B, W] of `paired` rows (chosen
    rows [0, B), their rejected rows [B, 2B) in the same order), each pair's prompt run once.

    The two rows of a pair hold the same tokens before their window start s (the window covers
    every target, so the columns before it are prompt, which the encoder checks is identical
    in both rows), and windows start at most at T - 1 - W. So the chosen rows' first P = T - W
    columns, with the columns from s on blanked (segment 0), run as one chunk that fills a
    `KVCache` of T slots; the cache is copied for the rejected rows, and every row's window
    [s, s + W) then runs as a second chunk that attends to its pair's prompt, as a decode step
    does. A window query sees the same keys as in the full row, so the outputs are those of
    `apply(..., read_columns=...)` up to float rounding, and for a gradient autodiff sums the
    prompt's share over the pair.
    The model runs on B P + 2B W tokens instead of 2B T: with 64-token prompts and completions,
    192 per pair instead of 256.
    """
    ids, positions, segments = rows["input_ids"], rows["positions"], rows["segment_ids"]
    columns = rows[TARGET_COLUMNS]
    rows_total, width = ids.shape
    pairs, window = rows_total // 2, columns.shape[1]
    prompt = width - window
    start = columns[:pairs, :1]
    prompt_segments = jnp.where(jnp.arange(prompt) < start, segments[:pairs, :prompt], 0)
    model = nnx.merge(graphdef, params)
    _, cache = model(
        ids[:pairs, :prompt],
        positions[:pairs, :prompt],
        prompt_segments,
        KVCache.init(model.cfg, pairs, width),
        0,
        return_hidden=True,
        read_columns=slice(prompt - 1, prompt),
    )
    hidden, _ = model(
        take_columns(ids, columns),
        take_columns(positions, columns),
        take_columns(segments, columns),
        cache.repeat_rows(2, tiled=True),  # row j reads pair j mod B's prompt
        prompt,
        return_hidden=True,
    )
    return hidden


def paired(batch: dict) -> dict:
    """chosen_* and rejected_* [B, T] -> one [2B, T] batch (chosen rows first), with the
    `target_columns` [B, W] too when the batch has them."""
    return {
        key: jnp.concatenate([batch[f"chosen_{key}"], batch[f"rejected_{key}"]], axis=0)
        for key in row_keys(batch, "chosen_")
    }


def ranked_rows(batch: dict) -> dict:
    """A ranked batch's [B, k, ...] row arrays -> one [B k, ...] batch (response j of row b at
    b k + j)."""
    b, k = batch["input_ids"].shape[:2]
    return {key: batch[key].reshape(b * k, *batch[key].shape[2:]) for key in row_keys(batch)}


def row_keys(batch: dict, prefix: str = "") -> tuple[str, ...]:
    """The `ROW_KEYS` that `batch` has under `prefix` (`target_columns` is optional)."""
    return tuple(key for key in ROW_KEYS if f"{prefix}{key}" in batch)


def sequence_rewards(graphdef: nnx.GraphDef, params: Any, batch: dict) -> jax.Array:
    """A scalar-head model's reward for each row: its output at the last real token (the only
    column the model's last block and head run queries on, `apply`'s `read_columns`)."""
    last = last_token_index(batch["segment_ids"])
    scores, _ = apply(
        graphdef,
        params,
        batch["input_ids"],
        batch["positions"],
        batch["segment_ids"],
        read_columns=last[:, None],
    )
    return scores[:, 0]

"""Forward passes shared by objectives: per-token logprobs, paired (chosen + rejected) and
ranked (k responses) passes in one concatenated call, and scalar heads read at each sequence's
last real token; rows that share a prompt (a pair, a ranking, the RL trainers' groups of
samples) can run it once per group (`shared_prompt_hidden`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jalign.data.schemas import TARGET_COLUMNS
from jalign.losses import chunked_token_logprobs, last_token_index, token_logprobs
from jalign.models import KVCache, apply, project, repeat_rows, take_columns
from jalign.models.layers import Columns

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


class PromptGroups(NamedTuple):
    """Rows that share a prompt: `size` rows per prompt, laid out `tiled` (member m of group g
    at row m G + g, as `paired` puts chosen rows before rejected ones) or blocked (at g size +
    m, as `ranked_rows` and the sampler lay them out)."""

    size: int
    tiled: bool

    def first_rows(self, rows: int) -> slice:
        """One row of each group (the one whose prompt runs)."""
        return slice(None, rows // self.size) if self.tiled else slice(None, None, self.size)


PAIRS = PromptGroups(2, tiled=True)


def target_logprobs(
    graphdef: nnx.GraphDef,
    params: Any,
    rows: dict,
    chunk: int = 0,
    temperature: float | jax.Array = 1.0,
    groups: PromptGroups | None = None,
) -> TargetLogprobs:
    """log p(target | context) at the columns that predict target tokens, of
    softmax(logits / temperature).

    With `target_columns` [N, W] in the rows (the collator adds them: `jalign.data.batching`),
    those W columns of each row; without, every column but the last. A prompt's columns need
    keys and values (the targets attend to them) but no logits, so the last block's queries
    and MLP, the LM head and the log-softmax run on W columns instead of T (`apply`'s
    `read_columns`). `chunk > 0` computes them in chunks of the window (no [N, W, V] float32
    tensor at once; see `jalign.losses.chunked_token_logprobs`). `groups`: the rows' groups
    that share their prompt, run once per group (`shared_prompt_hidden`; no effect without a
    window shorter than the row).
    """
    ids, mask = rows["input_ids"], rows["loss_mask"]
    columns = rows.get(TARGET_COLUMNS)
    if not has_prompt_window(rows):  # a full window starts at 0
        read, targets, mask = slice(None, -1), ids[:, 1:], mask[:, 1:]
    else:
        read, targets, mask = (
            columns,
            take_columns(ids, columns + 1),
            take_columns(mask, columns + 1),
        )
    if groups is not None and not isinstance(read, slice):
        hidden = shared_prompt_hidden(graphdef, params, rows, groups)
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


def has_prompt_window(rows: dict) -> bool:
    """Whether the rows' `target_columns` window leaves columns before it (a window of every
    predicting column, T - 1, starts at 0)."""
    columns = rows.get(TARGET_COLUMNS)
    return columns is not None and columns.shape[1] < rows["input_ids"].shape[1] - 1


def shared_prompt_hidden(
    graphdef: nnx.GraphDef,
    params: Any,
    rows: dict,
    groups: PromptGroups,
    extra_columns: int = 0,
    read_columns: Columns | None = None,
    prompt_end: bool = False,
) -> jax.Array:
    """Final hidden states [N, W + extra_columns, D] at each row's `target_columns` [N, W] and
    the `extra_columns` after them (or at `read_columns` of those), for rows whose `groups`
    share their prompt, which runs once per group. With `prompt_end`, the output at the column
    before each window comes first, [N, 1 + W + extra_columns, D]: the prompt's last column,
    computed once per group.

    The rows of a group hold the same tokens before their window start s (the window covers
    every target, so the columns before it are prompt, which the encoder checks is identical
    across the group), and windows start at most at T - 1 - W. So one row per group runs its
    first P = T - W - extra_columns columns, those from s on blanked (segment 0), as one chunk
    that fills a `KVCache` of T slots; the cache is copied for the group's rows, and every
    row's columns [s, s + W + extra_columns) then run as a second chunk that attends to its
    prompt, as a decode step does. A window query sees the same keys as in the full row, so
    the outputs are those of `apply(..., read_columns=...)` up to float rounding, and for a
    gradient autodiff sums the prompt's share over the group. The model runs on N P / size +
    N W tokens instead of N T: a DPO pair with 64-token prompt and completion, 192 instead of
    256; a ranking of 8, 576 instead of 1024.
    """
    ids, positions, segments = rows["input_ids"], rows["positions"], rows["segment_ids"]
    columns = rows[TARGET_COLUMNS]
    if extra_columns:
        after = columns[:, -1:] + jnp.arange(1, extra_columns + 1, dtype=columns.dtype)
        columns = jnp.concatenate([columns, after], axis=1)
    rows_total, width = ids.shape
    prompt = width - columns.shape[1]
    first = groups.first_rows(rows_total)
    start = columns[first, :1]
    prompt_segments = jnp.where(jnp.arange(prompt) < start, segments[first, :prompt], 0)
    model = nnx.merge(graphdef, params)
    end, cache = model(
        ids[first, :prompt],
        positions[first, :prompt],
        prompt_segments,
        KVCache.init(model.cfg, rows_total // groups.size, width),
        0,
        return_hidden=True,
        read_columns=jnp.maximum(start - 1, 0) if prompt_end else slice(prompt - 1, prompt),
    )
    hidden, _ = model(
        take_columns(ids, columns),
        take_columns(positions, columns),
        take_columns(segments, columns),
        cache.repeat_rows(groups.size, tiled=groups.tiled),
        prompt,
        return_hidden=True,
        read_columns=read_columns,
    )
    if not prompt_end:
        return hidden
    return jnp.concatenate([repeat_rows(end, groups.size, groups.tiled), hidden], axis=1)


def paired(batch: dict) -> dict:
    """chosen_* and rejected_* [B, T] -> one [2B, T] batch (chosen rows first), with the
    `target_columns` [B, W] too when the batch has them."""
    return {
        key: jnp.concatenate([batch[f"chosen_{key}"], batch[f"rejected_{key}"]], axis=0)
        for key in row_keys(batch, "chosen_")
    }


def ranked_groups(batch: dict) -> PromptGroups:
    """A ranked batch's k responses per record as the `PromptGroups` of its `ranked_rows`."""
    return PromptGroups(batch["input_ids"].shape[1], tiled=False)


def ranked_rows(batch: dict) -> dict:
    """A ranked batch's [B, k, ...] row arrays -> one [B k, ...] batch (response j of row b at
    b k + j)."""
    b, k = batch["input_ids"].shape[:2]
    return {key: batch[key].reshape(b * k, *batch[key].shape[2:]) for key in row_keys(batch)}


def row_keys(batch: dict, prefix: str = "") -> tuple[str, ...]:
    """The `ROW_KEYS` that `batch` has under `prefix` (`target_columns` is optional)."""
    return tuple(key for key in ROW_KEYS if f"{prefix}{key}" in batch)


def sequence_rewards(
    graphdef: nnx.GraphDef, params: Any, batch: dict, groups: PromptGroups | None = None
) -> jax.Array:
    """A scalar-head model's reward for each row: its output at the last real token (the only
    column the model's last block and head run queries on, `apply`'s `read_columns`).
    `groups`: the rows' groups that share their prompt, run once per group when the rows have
    a `target_columns` window (`shared_prompt_hidden`, with one column after the window: the
    last target is the last real token)."""
    last = last_token_index(batch["segment_ids"])
    if groups is not None and has_prompt_window(batch):
        read = (last - batch[TARGET_COLUMNS][:, 0])[:, None]
        hidden = shared_prompt_hidden(graphdef, params, batch, groups, 1, read)
        return project(graphdef, params, hidden)[:, 0]
    scores, _ = apply(
        graphdef,
        params,
        batch["input_ids"],
        batch["positions"],
        batch["segment_ids"],
        read_columns=last[:, None],
    )
    return scores[:, 0]

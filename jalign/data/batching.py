"""Batching: per-example arrays -> one fixed-shape batch dict.

Every batch has B = batch_size rows and a width T from the configured buckets: the smallest
bucket that holds the batch's longest sequence, so a run compiles one shape per bucket.
Training rows are RIGHT-padded; prompt rows for sampling are LEFT-padded. Padding has
segment id 0, position 0 and loss mask 0. A last batch with n < B examples (when not dropped)
is filled with copies of its last example; `example_mask` float32 [B] is 1 on real rows and 0
on the copies, so weighting per-row quantities by it makes the copies count nothing.

    sft / unpaired  input_ids, positions, segment_ids int32 [B, T]; loss_mask float32 [B, T];
                    example_mask [B]; unpaired adds labels bool [B]. Packed SFT rows hold
                    segments 1..k with positions restarting at 0 in each.
    preference      chosen_{input_ids,positions,segment_ids,loss_mask} and rejected_... [B, T]
                    (one T for both), prompt_lengths int32 [B], example_mask [B]
    preference and unpaired batches carry record_index int32 [B]: each row's position in its
                    source file (keys per-record caches such as reference logprobs)
    every training batch carries target_columns int32 [.., W] (chosen_ and rejected_ for
                    pairs, one W for both): per row, the W consecutive columns whose outputs
                    predict its targets (`target_columns`), so the LM head runs there only.
                    W, a quarter step of T - 1, is one of 4 shapes.
    ranked          input_ids, positions, segment_ids, loss_mask [B, k, T]; scores and
                    response_mask float32 [B, k]; example_mask [B]. k is the data's largest
                    record; a record with fewer responses repeats its last one, with
                    response_mask 0 (and score 0) on the repeats
    prompt          prompt_ids, prompt_positions, prompt_segment_ids int32 [B, P] (left-padded),
                    example_mask [B]; prompt and every pass-through field as a list of B values
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jalign.data.schemas import (
    EXAMPLE_MASK,
    PREFERENCE,
    PROMPT,
    RANKED,
    RECORD_INDEX,
    TARGET_COLUMNS,
    UNPAIRED,
)


def bucket_width(length: int, widths: Sequence[int]) -> int:
    """The smallest width >= length (widths ascending; the config guarantees one fits)."""
    return next(w for w in widths if w >= length)


def window_width(span: int, width: int) -> int:
    """The target window for rows of `width` columns whose targets span `span` predicting
    columns: `span` rounded up to a quarter of the width - 1 predicting columns, so a bucket
    compiles at most 4 window shapes."""
    columns = width - 1
    quarter = -(-columns // 4)
    return min(-(-max(span, 1) // quarter) * quarter, columns)


def target_columns(loss_masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per array of right-padded rows [..., T]: int32 [..., W], each row's W consecutive
    columns c whose outputs (logits at c predict token c + 1) cover all its targets.

    A row's window starts at its first predicting column, moved left when needed so that it
    ends inside the row; W (`window_width`) fits the longest span (first to last target) of
    all the arrays, which share it. Rows without targets get the window at column 0.
    """
    predicts = [np.asarray(mask)[..., 1:] != 0 for mask in loss_masks]
    columns = predicts[0].shape[-1]
    span = 1
    starts = []
    for p in predicts:
        first = np.where(p.any(-1), p.argmax(-1), 0)
        last = columns - 1 - p[..., ::-1].argmax(-1)
        span = max(span, int(np.max(np.where(p.any(-1), last - first + 1, 1))))
        starts.append(first)
    window = window_width(span, columns + 1)
    offsets = np.arange(window, dtype=np.int32)
    return [(np.minimum(f, columns - window)[..., None] + offsets).astype(np.int32) for f in starts]


def _training_rows(
    ids: Sequence[np.ndarray],
    loss_masks: Sequence[np.ndarray],
    width: int,
    pad_id: int,
    segments: Sequence[np.ndarray] | None = None,
    positions: Sequence[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Right-padded [n, width] arrays; unpacked rows (segments None) are one segment each."""
    n = len(ids)
    batch = {
        "input_ids": np.full((n, width), pad_id, np.int32),
        "positions": np.zeros((n, width), np.int32),
        "segment_ids": np.zeros((n, width), np.int32),
        "loss_mask": np.zeros((n, width), np.float32),
    }
    for i, row in enumerate(ids):
        length = len(row)
        batch["input_ids"][i, :length] = row
        batch["loss_mask"][i, :length] = loss_masks[i]
        batch["segment_ids"][i, :length] = 1 if segments is None else segments[i]
        batch["positions"][i, :length] = np.arange(length) if positions is None else positions[i]
    return batch


class Collator:
    """`grain` batch_fn: a list of per-example dicts (at most batch_size) -> one batch dict."""

    def __init__(
        self,
        kind: str,
        batch_size: int,
        widths: Sequence[int],
        pad_id: int,
        num_responses: int | None = None,
    ):
        """num_responses: the k of ranked batches (ranked data only)."""
        self.kind = kind
        self.batch_size = batch_size
        self.widths = tuple(widths)
        self.pad_id = pad_id
        self.num_responses = num_responses

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        real = len(examples)
        examples = [*examples, *[examples[-1]] * (self.batch_size - real)]
        batch = self._collate(examples)
        batch[EXAMPLE_MASK] = (np.arange(self.batch_size) < real).astype(np.float32)
        return batch

    def _width(self, sequences: Sequence[np.ndarray]) -> int:
        return bucket_width(max(len(s) for s in sequences), self.widths)

    def _collate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.kind == PROMPT:
            return self._prompts(examples)
        if self.kind == PREFERENCE:
            return self._pairs(examples)
        if self.kind == RANKED:
            return self._ranked(examples)
        batch = self._rows(examples, prefix="")
        (batch[TARGET_COLUMNS],) = target_columns([batch["loss_mask"]])
        if self.kind == UNPAIRED:
            batch["labels"] = np.array([e["labels"] for e in examples], dtype=bool)
            batch[RECORD_INDEX] = np.array([e[RECORD_INDEX] for e in examples], np.int32)
        return batch

    def _rows(self, examples: list[dict[str, Any]], prefix: str, width: int | None = None):
        ids = [e[f"{prefix}input_ids"] for e in examples]
        packed = "segment_ids" in examples[0]
        rows = _training_rows(
            ids,
            [e[f"{prefix}loss_mask"] for e in examples],
            width or self._width(ids),
            self.pad_id,
            segments=[e["segment_ids"] for e in examples] if packed else None,
            positions=[e["positions"] for e in examples] if packed else None,
        )
        return {f"{prefix}{key}": value for key, value in rows.items()}

    def _pairs(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        width = self._width(
            [e[key] for e in examples for key in ("chosen_input_ids", "rejected_input_ids")]
        )
        batch = {
            **self._rows(examples, "chosen_", width),
            **self._rows(examples, "rejected_", width),
            "prompt_lengths": np.array([e["prompt_lengths"] for e in examples], np.int32),
            RECORD_INDEX: np.array([e[RECORD_INDEX] for e in examples], np.int32),
        }
        prefixes = ("chosen_", "rejected_")
        columns = target_columns([batch[f"{p}loss_mask"] for p in prefixes])
        return batch | {f"{p}{TARGET_COLUMNS}": c for p, c in zip(prefixes, columns, strict=True)}

    def _ranked(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        k = self.num_responses

        def padded(values: Sequence[Any]) -> list[Any]:
            return [*values, *[values[-1]] * (k - len(values))]

        ids = [row for e in examples for row in padded(e["input_ids"])]
        masks = [m for e in examples for m in padded(e["loss_mask"])]
        rows = _training_rows(ids, masks, self._width(ids), self.pad_id)
        batch = {key: value.reshape(len(examples), k, -1) for key, value in rows.items()}
        real = np.arange(k) < np.array([len(e["scores"]) for e in examples])[:, None]
        batch["response_mask"] = real.astype(np.float32)
        scores = np.stack([padded(list(e["scores"])) for e in examples])
        batch["scores"] = (scores * real).astype(np.float32)
        (batch[TARGET_COLUMNS],) = target_columns([batch["loss_mask"]])
        return batch

    def _prompts(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [e["prompt_ids"] for e in examples]
        width = self._width(ids)
        batch = {
            "prompt_ids": np.full((len(ids), width), self.pad_id, np.int32),
            "prompt_positions": np.zeros((len(ids), width), np.int32),
            "prompt_segment_ids": np.zeros((len(ids), width), np.int32),
        }
        for i, row in enumerate(ids):
            batch["prompt_ids"][i, width - len(row) :] = row
            batch["prompt_positions"][i, width - len(row) :] = np.arange(len(row))
            batch["prompt_segment_ids"][i, width - len(row) :] = 1
        fields = dict.fromkeys(key for e in examples for key in e if key != "prompt_ids")
        batch.update({key: [e.get(key) for e in examples] for key in fields})
        return batch

"""Rollouts as teacher-forcing batches, and jitted per-row functions applied in fixed chunks.

The sampler keeps prompts left-padded and completions after them; models read right-padded rows
(`jalign.train.forward.sequence_rewards` reads each row's last real token).
`completion_sequences` packs each row's real prompt tokens followed by its completion tokens
(EOS included) to the left, in the token ids the sampler produced: nothing is decoded and
re-tokenised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jalign.eval.rollouts import Rollouts
from jalign.sharding import host_array

WIDTH_MULTIPLE = 16  # sequence widths are rounded up to this (few compiled shapes)


def completion_sequences(rollouts: Rollouts) -> dict[str, np.ndarray]:
    """input_ids, positions, segment_ids (1 on real tokens) int32 [R, W] and loss_mask float32
    [R, W] (1 on completion tokens), each row right-padded; W is prompt width + max_new_tokens
    rounded up to a multiple of `WIDTH_MULTIPLE`."""
    prompt_keep = rollouts.prompt_mask.astype(bool)
    done_keep = rollouts.mask.astype(bool)
    ids = np.concatenate([rollouts.prompt_ids, rollouts.tokens], axis=1)
    keep = np.concatenate([prompt_keep, done_keep], axis=1)
    is_completion = np.concatenate([np.zeros_like(prompt_keep), done_keep], axis=1)
    real = keep.sum(axis=1)
    # From the arrays' width, not the longest row: the same prompt width and max_new_tokens give
    # the same shape for every policy, so one compiled program serves them all.
    width = -(-ids.shape[1] // WIDTH_MULTIPLE) * WIDTH_MULTIPLE
    # A stable sort moves kept tokens (key False) before dropped ones, keeping their order.
    order = np.argsort(~keep, axis=1, kind="stable")
    order = np.pad(order, ((0, 0), (0, max(width - order.shape[1], 0))))[:, :width]
    valid = np.arange(width)[None] < real[:, None]

    def packed(x: np.ndarray) -> np.ndarray:
        return np.where(valid, np.take_along_axis(x, order, axis=1), 0)

    return {
        "input_ids": packed(ids).astype(np.int32),
        "positions": np.where(valid, np.arange(width)[None], 0).astype(np.int32),
        "segment_ids": valid.astype(np.int32),
        "loss_mask": packed(is_completion).astype(np.float32),
    }


def map_rows(
    fn: Callable[[dict[str, np.ndarray]], np.ndarray], batch: dict[str, np.ndarray], rows: int
) -> np.ndarray:
    """`fn` (one value per row) over `batch` in chunks of exactly `rows` rows (the last chunk is
    padded with copies of its first row, dropped from the result), concatenated."""
    total = len(next(iter(batch.values())))
    out = []
    for start in range(0, total, rows):
        chunk = {k: v[start : start + rows] for k, v in batch.items()}
        real = len(next(iter(chunk.values())))
        if real < rows:
            chunk = {
                k: np.concatenate([v, np.repeat(v[:1], rows - real, 0)]) for k, v in chunk.items()
            }
        out.append(host_array(fn(chunk))[:real])
    return np.concatenate(out)

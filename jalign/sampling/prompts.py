"""`PromptBatch`: prompts as a left-padded token-id batch, and the helper that builds one.

Prompts are left-padded so that every row's last prompt token sits in the last column: the
prefill's final logits are then the first completion token's logits for every row, and all rows
decode in lock-step. Padding the width P up to a bucket keeps the set of compiled shapes small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from jalign.errors import JalignError


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class PromptBatch:
    """input_ids int32 [B, P], left-padded; mask int32 [B, P]: 1 on prompt tokens, 0 on padding."""

    input_ids: jax.Array | np.ndarray
    mask: jax.Array | np.ndarray


def _bucket(length: int, buckets: Sequence[int] | None) -> int:
    if buckets is None:
        return 1 << (length - 1).bit_length()
    fitting = [b for b in sorted(buckets) if b >= length]
    if not fitting:
        raise JalignError(
            f"a prompt has {length} tokens, longer than the largest prompt bucket "
            f"{max(buckets)}; allowed: at most {max(buckets)} tokens (or add a larger bucket)"
        )
    return fitting[0]


def make_prompt_batch(
    prompts: Sequence[Sequence[int]],
    buckets: Sequence[int] | None = None,
    pad_id: int = 0,
) -> PromptBatch:
    """Left-pad token-id lists into a `PromptBatch` (numpy) of width P = the smallest bucket that
    holds the longest prompt (`buckets=None`: the next power of two)."""
    if len(prompts) == 0:
        raise JalignError("no prompts given; allowed: a non-empty list of token-id lists")
    rows = [np.asarray(p, dtype=np.int64).reshape(-1) for p in prompts]
    for i, row in enumerate(rows):
        if row.size == 0:
            raise JalignError(f"prompt {i} is empty; allowed: at least one token per prompt")
        if row.min() < 0:
            raise JalignError(f"prompt {i} has a negative token id {row.min()}; allowed: ids >= 0")
    width = _bucket(max(row.size for row in rows), buckets)
    input_ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        input_ids[i, width - row.size :] = row
        mask[i, width - row.size :] = 1
    return PromptBatch(input_ids=input_ids, mask=mask)


def check_prompt_batch(prompts: PromptBatch, vocab_size: int) -> np.ndarray:
    """Validate a `PromptBatch` on the host; returns each row's prompt length."""
    ids = np.asarray(prompts.input_ids)
    mask = np.asarray(prompts.mask)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise JalignError(
            f"prompt input_ids {ids.shape} and mask {mask.shape} must both be [batch, width]"
        )
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise JalignError(f"empty prompt batch {ids.shape}; allowed: at least one prompt token")
    if not np.isin(mask, (0, 1)).all():
        raise JalignError("prompt mask must hold only 0 (padding) and 1 (prompt token)")
    lengths = mask.sum(axis=1)
    left_padded = np.arange(ids.shape[1])[None] >= ids.shape[1] - lengths[:, None]
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise JalignError(f"prompt {empty[0]} is empty; allowed: at least one token per prompt")
    not_left_padded = np.flatnonzero((left_padded != mask.astype(bool)).any(axis=1))
    if not_left_padded.size:
        raise JalignError(
            f"prompt {not_left_padded[0]} is not left-padded; allowed: padding (mask 0) only "
            "before the prompt tokens (use make_prompt_batch)"
        )
    real = ids[mask.astype(bool)]
    if real.min() < 0 or real.max() >= vocab_size:
        raise JalignError(
            f"prompt token id out of range [{real.min()}, {real.max()}]; "
            f"allowed: 0 <= id < vocab_size={vocab_size}"
        )
    return lengths

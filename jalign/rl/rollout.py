"""A rollout batch: the sampler's completions laid out as training sequences.

Row r holds its left-padded prompt (width P) followed by its right-padded completion (width
N = max_new_tokens): input_ids / segment_ids [R, P + N], positions = cumsum(segment_ids) - 1,
exactly the positions the sampler used. The logits at column P - 1 + t predict completion token
t, so per-token quantities over the completion are [R, N] arrays aligned with
`completion_mask`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jalign.sampling import SampleOutput


@dataclasses.dataclass
class Rollout:
    """Host (numpy) arrays of one iteration's R = prompts x n rows."""

    prompts: list[str]
    completions: list[str]
    input_ids: np.ndarray  # int32 [R, P + N]
    segment_ids: np.ndarray  # int32 [R, P + N]
    completion_ids: np.ndarray  # int32 [R, N]
    completion_mask: np.ndarray  # float32 [R, N]
    sample_logprobs: np.ndarray  # float32 [R, N], as reported by the sampler
    finished_with_eos: np.ndarray  # bool [R]

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]

    @property
    def prompt_width(self) -> int:
        return self.input_ids.shape[1] - self.completion_ids.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        return self.completion_mask.sum(axis=1)

    def sequences(self) -> dict[str, np.ndarray]:
        """input_ids, positions, segment_ids and completion_mask: a model batch."""
        positions = np.maximum(np.cumsum(self.segment_ids, axis=1) - 1, 0).astype(np.int32)
        return {
            "input_ids": self.input_ids,
            "positions": positions,
            "segment_ids": self.segment_ids,
            "completion_mask": self.completion_mask,
        }


def build_rollout(sample: SampleOutput, prompts: Sequence[str], n: int, tokenizer: Any) -> Rollout:
    """Gather a `SampleOutput` to the host and decode each completion (up to its length,
    special tokens skipped) for text rewards. `prompts` are the B prompt texts; rows
    [i*n, (i+1)*n) belong to prompt i."""
    out = jax.device_get(sample)
    tokens = np.asarray(out.tokens, np.int32)
    mask = np.asarray(out.mask, np.float32)
    lengths = np.asarray(out.lengths)
    completions = [
        tokenizer.decode(tokens[r, : lengths[r]].tolist(), skip_special_tokens=True)
        for r in range(tokens.shape[0])
    ]
    segment = np.concatenate([np.asarray(out.prompt_mask), mask.astype(np.int32)], axis=1)
    return Rollout(
        prompts=[p for p in prompts for _ in range(n)],
        completions=completions,
        input_ids=np.concatenate([np.asarray(out.prompt_ids), tokens], axis=1).astype(np.int32),
        segment_ids=segment.astype(np.int32),
        completion_ids=tokens,
        completion_mask=mask,
        sample_logprobs=np.asarray(out.logprobs, np.float32),
        finished_with_eos=np.asarray(out.finished_with_eos, bool),
    )

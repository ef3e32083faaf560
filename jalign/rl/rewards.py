"""Reward sources for online RL, and the shaping applied to their scores.

A reward is named by a spec string:

    "function:module.path:fn"   fn(prompts: list[str], completions: list[str]) -> scores [N]
                                (a verifier / programmatic reward, RLVR)
    "model:PATH"                a scalar-head HF folder trained by `jalign rm`, read at the
                                last real token of prompt + completion (token ids as sampled,
                                never re-tokenized)

Several rewards combine into their weighted sum (multi-objective RL). `shape_scores` then adds
the missing-EOS penalty and the optional clipping / whitening.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from jalign.errors import JalignError
from jalign.eval.rewards import import_callable, text_scorer
from jalign.losses import normalize_scores, penalize_missing_eos
from jalign.rl.forward import last_token_scores
from jalign.rl.rollout import Rollout

FUNCTION = "function"
MODEL = "model"
SPEC_HELP = "'function:module.path:fn' or 'model:PATH' (a scalar-head HF folder)"


def parse_spec(spec: str) -> tuple[str, str]:
    """'kind:source' -> (kind, source), checked."""
    kind, sep, source = spec.partition(":")
    if not sep or kind not in (FUNCTION, MODEL) or not source:
        raise JalignError(f"reward spec {spec!r} is not understood; allowed: {SPEC_HELP}")
    return kind, source


def import_function(source: str) -> Callable[[list[str], list[str]], Any]:
    """'module.path:fn' -> the callable."""
    return import_callable(source, "a reward function (prompts, completions) -> scores")


@dataclasses.dataclass
class FunctionReward:
    """A Python reward on decoded text."""

    name: str
    function: Callable[[list[str], list[str]], Any]

    def __call__(self, rollout: Rollout) -> np.ndarray:
        return text_scorer(self.function)(rollout).astype(np.float32)


@dataclasses.dataclass
class ModelReward:
    """A trained reward model read at each row's last real token (`last_token_scores`), jitted
    once; rows are scored in chunks of `chunk` rows (one compiled shape), each group of `group`
    rows running its shared prompt once (`jalign.rl.forward.completion_outputs`)."""

    name: str
    graphdef: nnx.GraphDef
    params: Any
    chunk: int
    put: Callable[[dict], dict]
    group: int = 1

    def __post_init__(self) -> None:
        self._score = jax.jit(
            lambda p, batch: last_token_scores(self.graphdef, p, batch, self.group)
        )

    def __call__(self, rollout: Rollout) -> np.ndarray:
        sequences = rollout.sequences()
        keys = ("input_ids", "positions", "segment_ids", "completion_mask")
        out = []  # every chunk dispatched before the first is read back
        for start in range(0, rollout.rows, self.chunk):
            rows = slice(start, start + self.chunk)
            out.append(self._score(self.params, self.put({k: sequences[k][rows] for k in keys})))
        return np.concatenate(jax.device_get(out)).astype(np.float32)


RewardSource = FunctionReward | ModelReward


def combine(
    sources: Sequence[RewardSource], weights: Sequence[float], rollout: Rollout
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of the sources' scores [R] and each source's own scores by name."""
    parts = {source.name: source(rollout) for source in sources}
    weights = list(weights) or [1.0] * len(sources)
    total = sum(w * parts[s.name] for w, s in zip(weights, sources, strict=True))
    return np.asarray(total, np.float32), parts


def shape_scores(
    scores: np.ndarray,
    completion_ids: np.ndarray,
    completion_mask: np.ndarray,
    eos_id: int,
    missing_eos_penalty: float,
    clip: float,
    whiten: bool,
) -> np.ndarray:
    """scores [R] -> the scores trained on: minus `missing_eos_penalty` for a completion that
    never emitted EOS (the "EOS trick" of Huang et al. 2024, "The N+ Implementation Details of
    RLHF with PPO"), then clipped to [-clip, clip] (clip > 0) and whitened over the batch
    (`normalize_scores`)."""
    shaped = scores
    if missing_eos_penalty > 0:
        shaped = penalize_missing_eos(
            scores, completion_ids, completion_mask, eos_id, missing_eos_penalty
        )
    shaped = normalize_scores(shaped, clip=clip if clip > 0 else None, whiten=whiten)
    return np.asarray(shaped, np.float32)

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
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jalign.errors import JalignError
from jalign.losses import last_token_index, normalize_scores, penalize_missing_eos
from jalign.models import apply
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
    module_name, sep, name = source.partition(":")
    if not sep:
        raise JalignError(f"reward function {source!r} must look like 'module.path:fn'")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise JalignError(f"reward function {source!r} cannot be imported: {e}") from e
    if not callable(function):
        raise JalignError(f"reward function {source!r} is not callable")
    return function


@dataclasses.dataclass
class FunctionReward:
    """A Python reward on decoded text."""

    name: str
    function: Callable[[list[str], list[str]], Any]

    def __call__(self, rollout: Rollout) -> np.ndarray:
        scores = np.asarray(self.function(rollout.prompts, rollout.completions), np.float32)
        if scores.shape != (rollout.rows,):
            raise JalignError(
                f"reward function {self.name} returned shape {scores.shape}; allowed: one "
                f"score per completion, shape ({rollout.rows},)"
            )
        return scores


def last_token_scores(
    graphdef: nnx.GraphDef, params: Any, input_ids: jax.Array, segment_ids: jax.Array
) -> jax.Array:
    """A scalar-head model's output [B] at each row's last real token (rows may be padded on
    both sides: left-padded prompt + right-padded completion)."""
    positions = jnp.maximum(jnp.cumsum(segment_ids, axis=1) - 1, 0)
    out, _ = apply(graphdef, params, input_ids, positions, segment_ids)
    last = last_token_index(segment_ids)
    return jnp.take_along_axis(out, last[:, None], axis=1)[:, 0].astype(jnp.float32)


@dataclasses.dataclass
class ModelReward:
    """A trained reward model. `score_rows(params, ids, segment_ids)` is jitted once; rows are
    scored in chunks of `chunk` rows (one compiled shape)."""

    name: str
    graphdef: nnx.GraphDef
    params: Any
    chunk: int
    put: Callable[[dict], dict]

    def __post_init__(self) -> None:
        self._score = jax.jit(lambda p, ids, seg: last_token_scores(self.graphdef, p, ids, seg))

    def __call__(self, rollout: Rollout) -> np.ndarray:
        out = []
        for start in range(0, rollout.rows, self.chunk):
            rows = slice(start, start + self.chunk)
            batch = self.put({"ids": rollout.input_ids[rows], "seg": rollout.segment_ids[rows]})
            out.append(np.asarray(self._score(self.params, batch["ids"], batch["seg"])))
        return np.concatenate(out)


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

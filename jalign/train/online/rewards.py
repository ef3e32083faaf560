"""Reward sources for semi-online rounds: a Python function or a reward-model folder, both seen
as `reward(prompts, completions) -> np.ndarray` of one score per completion."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jalign.data import DataConfig
from jalign.data.encode import TextEncoder
from jalign.data.tokenizer import pad_token_id
from jalign.errors import JalignError
from jalign.train.forward import sequence_rewards

RewardFn = Callable[[list[str], list[str]], np.ndarray]
_WIDTH_MULTIPLE = 16  # reward-model rows are padded to a multiple of this (few compiled shapes)


def import_reward_fn(spec: str) -> RewardFn:
    """ "package.module:function" -> the function."""
    module_name, _, name = spec.partition(":")
    allowed = "'package.module:function' naming a function (prompts, completions) -> scores"
    if not module_name or not name:
        raise JalignError(f"config key 'dpo.online.reward_fn' is {spec!r}; allowed: {allowed}")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise JalignError(
            f"config key 'dpo.online.reward_fn' is {spec!r}, which cannot be imported ({e}); "
            f"allowed: {allowed}"
        ) from None
    if not callable(fn):
        raise JalignError(f"config key 'dpo.online.reward_fn' is {spec!r}; allowed: {allowed}")
    return fn


class RewardModelScorer:
    """Scores (prompt, completion) texts with a scalar-head reward model, encoding them as the
    data pipeline does (`TextEncoder.sequence`), in fixed-size batches of `batch_size` rows."""

    def __init__(self, folder: str, tokenizer: Any, data: DataConfig, batch_size: int):
        from jalign.interop import load_hf_model

        _, graphdef, self.params = load_hf_model(folder, head="scalar")
        self.encoder = TextEncoder(tokenizer, data)
        self.pad = pad_token_id(tokenizer)
        self.batch_size = batch_size
        self.score = jax.jit(lambda p, b: sequence_rewards(graphdef, p, b))

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        ids = [self.encoder.sequence(p, c).ids for p, c in zip(prompts, completions, strict=True)]
        width = -(-max(map(len, ids)) // _WIDTH_MULTIPLE) * _WIDTH_MULTIPLE
        scores = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start : start + self.batch_size]
            batch = {
                "input_ids": np.full((self.batch_size, width), self.pad, np.int32),
                "positions": np.zeros((self.batch_size, width), np.int32),
                "segment_ids": np.zeros((self.batch_size, width), np.int32),
            }
            for i, row in enumerate(chunk):
                batch["input_ids"][i, : len(row)] = row
                batch["positions"][i, : len(row)] = np.arange(len(row))
                batch["segment_ids"][i, : len(row)] = 1
            out = np.asarray(jax.device_get(self.score(self.params, batch)))
            scores.append(out[: len(chunk)])
        return np.concatenate(scores).astype(np.float64)


def load_reward(online: Any, tokenizer: Any, data: DataConfig) -> RewardFn:
    """The reward named by `dpo.online.reward_fn` or `dpo.online.reward_model`."""
    if online.reward_fn:
        return import_reward_fn(online.reward_fn)
    return RewardModelScorer(
        online.reward_model, tokenizer, data, online.batch_size * online.samples
    )

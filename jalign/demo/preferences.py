"""Preference pairs for the demo task, sampled from a policy and labelled by the gold reward.

`samples_per_prompt` (even) samples per prompt from the policy (temperature 1), paired in
consecutive twos, each pair labelled with Bradley-Terry noise:
P(a preferred) = sigmoid(beta * (gold_a - gold_b)) (`label_pairs`). Pairs whose completions are
identical or tie on gold reward are skipped, as a human labeller would have no preference, and
so are pairs with an empty completion (the data layer refuses empty responses).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from jalign.demo.task import label_pairs
from jalign.eval.rollouts import sample_rollouts
from jalign.sampling import SamplingParams


def sample_preference_pairs(
    graphdef: nnx.GraphDef,
    params: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    beta: float = 10.0,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    samples_per_prompt: int = 2,
) -> list[dict[str, str]]:
    """{"prompt", "chosen", "rejected"} records, `samples_per_prompt // 2` per prompt."""
    sampling = SamplingParams(
        temperature=temperature, n=samples_per_prompt, max_new_tokens=max_new_tokens, seed=seed
    )
    rollouts = sample_rollouts(graphdef, params, tokenizer, prompts, sampling, batch_size)
    rng = np.random.default_rng(seed)
    records = []
    for r in rollouts:
        records += label_pairs(r.prompts[0::2], r.completions[0::2], r.completions[1::2], rng, beta)
    return [r for r in records if r["chosen"].strip() and r["rejected"].strip()]


def write_jsonl(records: Sequence[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path

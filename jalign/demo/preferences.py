"""Preference pairs for the demo task, sampled from a policy and labelled by the gold reward.

`samples_per_prompt` (even) samples per prompt from the policy (temperature 1), paired either
in consecutive twos (`pairing="consecutive"`: k/2 pairs per prompt from k samples) or every
two with each other (`pairing="all"`: k(k-1)/2 pairs from the same k samples, 7x the pairs at
k = 8 for no extra sampling), each pair labelled with Bradley-Terry noise:
P(a preferred) = sigmoid(beta * (gold_a - gold_b)) (`label_pairs`). Pairs whose completions are
identical or tie on gold reward are skipped, as a human labeller would have no preference, and
so are pairs with an empty completion (the data layer refuses empty responses).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from jalign.demo.task import label_pairs
from jalign.errors import JalignError
from jalign.eval.rollouts import sample_rollouts
from jalign.sampling import SamplingParams

PAIRINGS = ("consecutive", "all")


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
    pairing: str = "consecutive",
) -> list[dict[str, str]]:
    """{"prompt", "chosen", "rejected"} records: `samples_per_prompt // 2` per prompt
    (`pairing="consecutive"`) or `samples_per_prompt * (samples_per_prompt - 1) // 2`
    (`pairing="all"`), fewer where pairs are skipped (see the module docstring)."""
    if pairing not in PAIRINGS:
        raise JalignError(f"pairing={pairing!r} is not known; allowed: {', '.join(PAIRINGS)}")
    sampling = SamplingParams(
        temperature=temperature, n=samples_per_prompt, max_new_tokens=max_new_tokens, seed=seed
    )
    rollouts = sample_rollouts(graphdef, params, tokenizer, prompts, sampling, batch_size)
    rng = np.random.default_rng(seed)
    records = []
    k = samples_per_prompt
    if pairing == "consecutive":
        pairs = [(i, i + 1) for i in range(0, k - 1, 2)]
    else:
        pairs = list(itertools.combinations(range(k), 2))
    for r in rollouts:
        for start in range(0, len(r.completions), k):
            prompts = [r.prompts[start]] * len(pairs)
            first = [r.completions[start + i] for i, _ in pairs]
            second = [r.completions[start + j] for _, j in pairs]
            records += label_pairs(prompts, first, second, rng, beta)
    return [r for r in records if r["chosen"].strip() and r["rejected"].strip()]


def write_jsonl(records: Sequence[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path

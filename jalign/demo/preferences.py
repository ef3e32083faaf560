"""Ranked and pairwise preference data for the demo task, sampled from a policy and labelled
by the gold reward with Plackett-Luce noise.

`samples_per_prompt` samples per prompt from the policy (temperature 1) are ranked by
`rank_completions` (P(a above b) = sigmoid(beta * (gold_a - gold_b)) for any two of them) into
one ranked record {"prompt", "responses", "scores"}, the format a reward model trains on with
all its k(k-1)/2 comparisons at once (`rm.data_kind = "ranked"`). `ranking_pairs` turns each
ranking into its preference pairs {"prompt", "chosen", "rejected"} for the DPO family. A prompt
with an empty sample is skipped, since the data layer refuses empty responses.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from jalign.demo.task import rank_completions
from jalign.eval.rollouts import sample_rollouts
from jalign.sampling import SamplingParams


def sample_rankings(
    graphdef: nnx.GraphDef,
    params: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    beta: float = 10.0,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    samples_per_prompt: int = 8,
) -> list[dict]:
    """One ranked record per prompt (fewer where a sample is empty), its `samples_per_prompt`
    samples ranked by the gold reward with Plackett-Luce noise of sharpness `beta`."""
    sampling = SamplingParams(
        temperature=temperature, n=samples_per_prompt, max_new_tokens=max_new_tokens, seed=seed
    )
    rollouts = sample_rollouts(graphdef, params, tokenizer, prompts, sampling, batch_size)
    rng = np.random.default_rng(seed)
    k = samples_per_prompt
    records = []
    for r in rollouts:
        for start in range(0, len(r.completions), k):
            completions = r.completions[start : start + k]
            if all(c.strip() for c in completions):
                records.append(rank_completions(r.prompts[start], completions, rng, beta))
    return records


def ranking_pairs(records: Sequence[dict]) -> list[dict[str, str]]:
    """Every comparison of each ranked record as a pair {"prompt", "chosen", "rejected"}, the
    higher-scored response chosen; responses of equal score (ties, copies) make no pair."""
    pairs = []
    for record in records:
        ranked = zip(record["responses"], record["scores"], strict=True)
        for (a, score_a), (b, score_b) in itertools.combinations(ranked, 2):
            if score_a != score_b:
                chosen, rejected = (a, b) if score_a > score_b else (b, a)
                pairs.append({"prompt": record["prompt"], "chosen": chosen, "rejected": rejected})
    return pairs


def write_jsonl(records: Sequence[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path

"""Training records from k scored samples per prompt.

Rows [i k, (i + 1) k) are prompt i's samples. Each selector returns the records and a few
statistics of what it kept (logged per round as `online/<name>`).

Pairs (semi-online DPO; Lanchantin et al. 2025, Tang et al. 2024):
    best_worst   chosen = the highest-scoring sample, rejected = the lowest-scoring one
    best_random  chosen = the highest-scoring sample, rejected = a uniformly drawn sample that
                 scores lower
A prompt gives no pair when the two scores differ by no more than `min_margin`, when the two
texts are identical, or when either is empty. Ties go to the earlier sample.

Kept samples (rejection-sampling fine-tuning):
    best_per_prompt  the highest-scoring sample of each prompt (RAFT, Dong et al. 2023)
    top_fraction     the `keep_fraction` highest-scoring samples of the whole round
                     (ReST's filtering step, Gulcehre et al. 2023)
Either way only samples scoring at least `min_reward` with a non-empty text are kept.

A prompt in chat form (a message list) gets its responses as one assistant message each, so
the records have the form the data layer reads (prompt and responses in the same form).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PAIR_MODES = ("best_worst", "best_random")
KEEP_MODES = ("best_per_prompt", "top_fraction")


def _response(prompt: Any, text: str) -> Any:
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def select_pairs(
    prompts: Sequence[Any],
    completions: Sequence[str],
    scores: np.ndarray,
    k: int,
    mode: str,
    min_margin: float,
    rng: np.random.Generator,
) -> tuple[list[dict], dict[str, float]]:
    """{"prompt", "chosen", "rejected", "chosen_score", "rejected_score"}, at most one per
    prompt, and the mean chosen / rejected scores."""
    scores = np.asarray(scores, np.float64).reshape(-1, k)
    records = []
    for i, row in enumerate(scores):
        best = int(np.argmax(row))
        if mode == "best_worst":
            worst = int(np.argmin(row))
        else:
            lower = np.flatnonzero(row < row[best])
            worst = int(rng.choice(lower)) if lower.size else best
        chosen, rejected = completions[i * k + best], completions[i * k + worst]
        if row[best] - row[worst] <= min_margin or chosen == rejected:
            continue
        if not chosen.strip() or not rejected.strip():
            continue
        prompt = prompts[i * k]
        records.append(
            {
                "prompt": prompt,
                "chosen": _response(prompt, chosen),
                "rejected": _response(prompt, rejected),
                "chosen_score": float(row[best]),
                "rejected_score": float(row[worst]),
            }
        )
    stats = {"pairs": float(len(records))}
    if records:
        stats["reward_chosen"] = float(np.mean([r["chosen_score"] for r in records]))
        stats["reward_rejected"] = float(np.mean([r["rejected_score"] for r in records]))
    return records, stats


def select_top(
    prompts: Sequence[Any],
    completions: Sequence[str],
    scores: np.ndarray,
    k: int,
    mode: str,
    keep_fraction: float,
    min_reward: float,
) -> tuple[list[dict], dict[str, float]]:
    """SFT records ({"prompt", "completion"} or {"messages"}) of the kept samples, and the
    number kept with their mean score."""
    flat = np.asarray(scores, np.float64).reshape(-1)
    if mode == "best_per_prompt":
        picked = [i * k + int(np.argmax(row)) for i, row in enumerate(flat.reshape(-1, k))]
    else:
        count = max(1, round(keep_fraction * flat.size))
        picked = sorted(np.argsort(-flat, kind="stable")[:count].tolist())
    kept = [i for i in picked if flat[i] >= min_reward and completions[i].strip()]
    records = []
    for i in kept:
        prompt, text = prompts[i], completions[i]
        if isinstance(prompt, str):
            records.append({"prompt": prompt, "completion": text, "score": float(flat[i])})
        else:
            messages = [*prompt, {"role": "assistant", "content": text}]
            records.append({"messages": messages, "score": float(flat[i])})
    stats = {"kept": float(len(records))}
    if records:
        stats["reward_kept"] = float(np.mean([r["score"] for r in records]))
    return records, stats

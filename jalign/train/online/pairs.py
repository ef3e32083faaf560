"""Preference pairs from k scored samples per prompt.

    best_worst   chosen = the highest-scoring sample, rejected = the lowest-scoring one
                 (Lanchantin et al. 2025; Tang et al. 2024 use the same for verifiable rewards)
    best_random  chosen = the highest-scoring sample, rejected = a uniformly drawn sample that
                 scores lower

Ties go to the earlier sample. A prompt gives no pair when the two scores differ by no more
than `min_margin`, when the two texts are identical, or when either is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAIR_MODES = ("best_worst", "best_random")


def select_pairs(
    prompts: Sequence[str],
    completions: Sequence[str],
    scores: np.ndarray,
    k: int,
    mode: str,
    min_margin: float,
    rng: np.random.Generator,
) -> list[dict]:
    """Rows [i k, (i + 1) k) are prompt i's samples; returns {"prompt", "chosen", "rejected",
    "chosen_score", "rejected_score"} records, at most one per prompt."""
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
        records.append(
            {
                "prompt": prompts[i * k],
                "chosen": chosen,
                "rejected": rejected,
                "chosen_score": float(row[best]),
                "rejected_score": float(row[worst]),
            }
        )
    return records

"""Evaluate policies on a prompt set: rewards, KL to a reference, length, win rate against a
baseline and refusal rate, one row per policy.

    report = evaluate({"dpo": dpo}, tokenizer, prompts, EvalSettings(sampling),
                      rewards={"gold": gold_scorer}, reference=sft, baseline=sft,
                      judge=score_judge(gold_scorer))
    print(format_table(report))

Every policy (and the baseline) is sampled with the same seed on the same prompts, so rows line
up for the pairwise win rate and identical policies give identical samples. The metrics are
means over all samples: `reward/<name>`, `kl` with `kl_stderr` (`jalign.eval.kl`), `length`
(completion tokens, EOS included), `eos_rate`, `win_rate` with `wins` / `ties` / `losses`
(`jalign.eval.compare`), `refusal_rate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jalign.errors import JalignError
from jalign.eval.compare import Judge, win_rate
from jalign.eval.kl import sequence_kl
from jalign.eval.models import EvalModel
from jalign.eval.refusal import RefusalDetector, refusal_rate
from jalign.eval.rewards import SCORE_ROWS, Scorer
from jalign.eval.rollouts import Rollouts, concat_rollouts, sample_rollouts
from jalign.sampling import SamplingParams

BASELINE = "baseline"


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How to sample (`sampling.n` samples per prompt, `batch_size` prompts per sampler call,
    `prompt_buckets` as in `make_prompt_batch`) and how many rows per scoring call."""

    sampling: SamplingParams
    batch_size: int = 32
    prompt_buckets: Sequence[int] | None = None
    score_rows: int = SCORE_ROWS
    mesh: Any = None


def sample_policy(
    model: EvalModel,
    tokenizer: Any,
    prompts: Sequence[Any],
    settings: EvalSettings,
    encode: Callable[[Any], Sequence[int]] | None = None,
) -> Rollouts:
    """All of `model`'s samples on `prompts` (seeded by `settings.sampling.seed`)."""
    parts = sample_rollouts(
        model.graphdef,
        model.params,
        tokenizer,
        prompts,
        settings.sampling,
        settings.batch_size,
        settings.prompt_buckets,
        mesh=settings.mesh,
        encode=encode,
    )
    return concat_rollouts(parts)


def rollout_metrics(
    model: EvalModel,
    rollouts: Rollouts,
    settings: EvalSettings,
    rewards: Mapping[str, Scorer],
    reference: EvalModel | None,
    refusal: RefusalDetector | None,
) -> dict[str, float]:
    """The metrics of one policy's rollouts that need no baseline."""
    metrics = {f"reward/{name}": float(scorer(rollouts).mean()) for name, scorer in rewards.items()}
    if reference is not None:
        kl = sequence_kl(
            model, reference, rollouts, settings.sampling.temperature, settings.score_rows
        )
        metrics["kl"] = float(kl.mean())
        metrics["kl_stderr"] = float(kl.std(ddof=1) / np.sqrt(kl.size)) if kl.size > 1 else 0.0
    metrics["length"] = float(rollouts.lengths.mean())
    metrics["eos_rate"] = float(rollouts.finished_with_eos.mean())
    if refusal is not None:
        metrics["refusal_rate"] = refusal_rate(refusal, rollouts.completions)
    return metrics


def evaluate(
    policies: Mapping[str, EvalModel],
    tokenizer: Any,
    prompts: Sequence[Any],
    settings: EvalSettings,
    *,
    rewards: Mapping[str, Scorer] | None = None,
    reference: EvalModel | None = None,
    baseline: EvalModel | None = None,
    judge: Judge | None = None,
    refusal: RefusalDetector | None = None,
    encode: Callable[[Any], Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """One row `{"policy": name, **metrics}` per policy, then one for the baseline (if given).

    `judge` (needs `baseline`) adds each policy's win rate against the baseline."""
    rewards = dict(rewards or {})
    if judge is not None and baseline is None:
        raise JalignError("a win-rate judge needs a baseline policy to compare against")
    models = dict(policies) | ({BASELINE: baseline} if baseline is not None else {})
    rollouts = {
        name: sample_policy(model, tokenizer, prompts, settings, encode)
        for name, model in models.items()
    }
    rows = []
    for name, model in models.items():
        row: dict[str, Any] = {"policy": name}
        row |= rollout_metrics(model, rollouts[name], settings, rewards, reference, refusal)
        if judge is not None and name != BASELINE:
            result = win_rate(judge, rollouts[name], rollouts[BASELINE])
            row |= {
                "win_rate": result.rate,
                "wins": result.wins,
                "ties": result.ties,
                "losses": result.losses,
            }
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An aligned text table: one line per row, one column per metric (blank when absent)."""
    columns = ["policy"]
    for row in rows:
        columns += [k for k in row if k not in columns]
    cells = [columns] + [
        [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    )

"""Win rate of a policy against a baseline, pairwise on the same prompts.

Row r of the policy's rollouts and row r of the baseline's answer the same prompt. A judge gives
each pair an outcome in [0, 1]: 1 when the policy's completion is better, 0 when the baseline's
is, 0.5 for a tie (a probabilistic judge may give anything between). The win rate is the mean
outcome, so ties count half:

    win_rate = (wins + 0.5 * ties) / pairs          (for outcomes in {0, 0.5, 1})

Judges: `score_judge` compares a reward (a reward model or a gold function: higher wins, equal
within `tie_tolerance` ties); `text_judge` wraps any callable
`judge(prompts, completions_policy, completions_baseline) -> outcomes`, e.g. an LLM judge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from jalign.errors import JalignError
from jalign.eval.rewards import Scorer
from jalign.eval.rollouts import Rollouts

Judge = Callable[[Rollouts, Rollouts], np.ndarray]
PairwiseJudgeFn = Callable[[list[str], list[str], list[str]], np.ndarray]


def outcomes_from_scores(
    policy: np.ndarray, baseline: np.ndarray, tie_tolerance: float = 0.0
) -> np.ndarray:
    """1 where policy > baseline + tol, 0 where policy < baseline - tol, else 0.5."""
    diff = np.asarray(policy, np.float64) - np.asarray(baseline, np.float64)
    return np.where(diff > tie_tolerance, 1.0, np.where(diff < -tie_tolerance, 0.0, 0.5))


def score_judge(scorer: Scorer, tie_tolerance: float = 0.0) -> Judge:
    """Judge by a reward: the higher-scored completion wins."""

    def judge(policy: Rollouts, baseline: Rollouts) -> np.ndarray:
        return outcomes_from_scores(scorer(policy), scorer(baseline), tie_tolerance)

    return judge


def text_judge(fn: PairwiseJudgeFn) -> Judge:
    """Judge by `fn(prompts, completions_policy, completions_baseline)`, which returns one
    outcome in [0, 1] per pair (1: the policy's completion is better)."""

    def judge(policy: Rollouts, baseline: Rollouts) -> np.ndarray:
        outcomes = np.asarray(
            fn(list(policy.prompts), list(policy.completions), list(baseline.completions)),
            np.float64,
        )
        if outcomes.shape != (len(policy.completions),) or not (
            np.all((outcomes >= 0) & (outcomes <= 1))
        ):
            raise JalignError(
                f"judge {getattr(fn, '__name__', fn)!r} returned {outcomes!r}; allowed: one "
                f"outcome in [0, 1] per pair ({len(policy.completions)},), 1 = first is better"
            )
        return outcomes

    return judge


@dataclasses.dataclass(frozen=True)
class WinRate:
    """The mean outcome and the counts of wins (> 0.5), ties (= 0.5) and losses (< 0.5)."""

    rate: float
    wins: int
    ties: int
    losses: int

    @classmethod
    def of(cls, outcomes: np.ndarray) -> WinRate:
        outcomes = np.asarray(outcomes, np.float64)
        if outcomes.size == 0:
            raise JalignError("win rate of no pairs; allowed: at least one prompt")
        return cls(
            rate=float(outcomes.mean()),
            wins=int((outcomes > 0.5).sum()),
            ties=int((outcomes == 0.5).sum()),
            losses=int((outcomes < 0.5).sum()),
        )


def win_rate(judge: Judge, policy: Rollouts, baseline: Rollouts) -> WinRate:
    """The policy's win rate against the baseline on the same prompts (row for row)."""
    if list(policy.prompts) != list(baseline.prompts):
        raise JalignError(
            "win rate: the policy's and the baseline's rollouts must answer the same prompts in "
            "the same order (same prompt set, batch size and samples per prompt)"
        )
    return WinRate.of(judge(policy, baseline))

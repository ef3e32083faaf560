"""RL metrics under the names TRL / verl users know, and per-phase wall times."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

import numpy as np

from jalign.rl.rollout import Rollout

PHASES = ("rollout", "scoring", "forward", "update")


class PhaseTimer:
    """Wall time of each phase of an iteration (each phase ends with its results on the host,
    so device work is counted in the phase that launched it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def metrics(self) -> dict[str, float]:
        total = sum(self.seconds.values())
        out = {f"time/{phase}": self.seconds.get(phase, 0.0) for phase in PHASES}
        out["time/iteration"] = total
        out["time/rollout_share"] = self.seconds.get("rollout", 0.0) / max(total, 1e-12)
        return out


def mean_metrics(steps: Sequence[dict]) -> dict[str, float]:
    """Mean of each metric over an update's steps (the reported value of the iteration)."""
    return {name: float(np.mean([float(s[name]) for s in steps])) for name in steps[0]}


def rollout_metrics(
    rollout: Rollout,
    scores: np.ndarray,
    sequence_kl: np.ndarray,
    entropy: np.ndarray,
    kl_coef: float,
) -> dict[str, float]:
    """scores [R] (the combined reward, before shaping); sequence_kl [R] = sum_t (log pi -
    log pi_ref) (k1, as TRL's objective/kl); entropy [R, N] per-token entropies.

    objective/rlhf_reward = mean(score - kl_coef * KL) (TRL); response/clip_ratio = fraction of
    completions that hit max_new_tokens without an EOS; val/num_eos = completions with EOS.
    """
    mask = rollout.completion_mask
    lengths = rollout.lengths
    return {
        "objective/scores": float(scores.mean()),
        "objective/kl": float(sequence_kl.mean()),
        "objective/kl_coef": float(kl_coef),
        "objective/non_score_reward": float(-kl_coef * sequence_kl.mean()),
        "objective/rlhf_reward": float((scores - kl_coef * sequence_kl).mean()),
        "objective/entropy": float((entropy * mask).sum() / max(mask.sum(), 1.0)),
        "val/num_eos": int(rollout.finished_with_eos.sum()),
        "response/length_mean": float(lengths.mean()),
        "response/length_max": float(lengths.max()),
        "response/clip_ratio": float((~rollout.finished_with_eos).mean()),
    }

"""Rejection-sampling fine-tuning (`jalign rft`): sample k responses per prompt from the current
policy, keep the best by a reward, SFT on them, repeat.

Every `rft.every` steps a round samples `rft.samples` responses for each of
`rft.prompts_per_round` prompts, scores them with `rft.reward_fn` or `rft.reward_model`, and
keeps either each prompt's best sample (`keep = "best_per_prompt"`: RAFT, Dong et al. 2023,
"RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment") or the top
`keep_fraction` of the round (`keep = "top_fraction"`: the Grow/Improve loop of ReST, Gulcehre
et al. 2023, "Reinforced Self-Training (ReST) for Language Modeling"), above `min_reward`. The
loss is SFT's cross-entropy on the kept responses (`loss_normalization`, `logprob_chunk` as
for `jalign sft`). Rounds are written to the run directory and resume exactly (see
`jalign.train.online.rounds`).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from jalign.data import SFT
from jalign.train.objective import Objective, RunContext
from jalign.train.objectives.sft import SFT_CHOICES, SFT_DEFAULTS, make_sft_loss
from jalign.train.online import (
    RFT_CHECKS,
    RFT_CHOICES,
    RFT_DEFAULTS,
    RoundPlan,
    Rounds,
    check_rounds,
    select_top,
)


def make_data(ctx: RunContext, batch_size: int) -> Any:
    rft = ctx.config.rft
    plan = RoundPlan(
        section=rft,
        key="rft",
        kind=SFT,
        select=lambda prompts, completions, scores, k, rng: select_top(
            prompts, completions, scores, k, rft.keep, rft.keep_fraction, rft.min_reward
        ),
    )
    return Rounds(ctx, batch_size, plan)


def validate(config: ml_collections.ConfigDict) -> None:
    check_rounds(config, "rft", "rejection-sampling fine-tuning")


RFT_OBJECTIVE = Objective(
    name="rft",
    data_kind=SFT,
    head="lm",
    defaults={**SFT_DEFAULTS, **RFT_DEFAULTS},
    make_loss=lambda ctx: make_sft_loss(ctx, section="rft"),
    make_data=make_data,
    choices={**SFT_CHOICES, **RFT_CHOICES},
    checks=RFT_CHECKS,
    validate=validate,
)

"""Config sections of trainers whose data comes in rounds: `dpo.online` (semi-online DPO) and
`rft` (rejection-sampling fine-tuning), and their rules across keys."""

from __future__ import annotations

import ml_collections

from jalign.config import at_least, between
from jalign.errors import JalignError
from jalign.train.online.selection import KEEP_MODES, PAIR_MODES

REFERENCE_UPDATES = ("fixed", "refresh")

ROUND_DEFAULTS = {
    "every": 0,  # steps per round; 0 = no rounds
    "prompts": "",  # prompt records {"prompt": ...} (text or chat) to sample from
    "prompts_per_round": 64,  # prompts sampled per round (cycling through a seeded shuffle)
    "samples": 4,  # k completions per prompt
    "temperature": 1.0,
    "max_new_tokens": 64,
    "batch_size": 64,  # prompts per sampling call
    "reward_fn": "",  # "module:function", (prompts, completions) -> scores
    "reward_model": "",  # or: an HF folder of a scalar-head reward model
}
ROUND_CHECKS = {
    "every": at_least(0),
    "prompts_per_round": at_least(1),
    "samples": at_least(1),
    "temperature": at_least(0),
    "max_new_tokens": at_least(1),
    "batch_size": at_least(1),
}
ONLINE_DEFAULTS = {
    **ROUND_DEFAULTS,
    "pairs": "best_worst",  # see jalign.train.online.selection
    "min_margin": 0.0,  # a prompt gives a pair only if chosen - rejected score > this
    "reference": "fixed",  # "refresh": reference := current policy at each round
}
ONLINE_CHOICES = {"pairs": PAIR_MODES, "reference": REFERENCE_UPDATES}
ONLINE_CHECKS = {**ROUND_CHECKS, "samples": at_least(2)}
RFT_DEFAULTS = {
    **ROUND_DEFAULTS,
    "every": 50,
    "keep": "best_per_prompt",  # see jalign.train.online.selection
    "keep_fraction": 0.25,  # top_fraction: share of the round's samples kept
    "min_reward": -1e9,  # keep only samples scoring at least this
}
RFT_CHOICES = {"keep": KEEP_MODES}
RFT_CHECKS = {**ROUND_CHECKS, "every": at_least(1), "keep_fraction": between(0, 1)}


def _fail(key: str, value: object, allowed: str, why: str = "") -> JalignError:
    because = f" ({why})" if why else ""
    return JalignError(f"config key '{key}' is {value!r}{because}; allowed: {allowed}")


def check_rounds(config: ml_collections.ConfigDict, key: str, why: str) -> None:
    """Rules every round-based run follows; `key` is the section's dotted name."""
    section = config
    for part in key.split("."):
        section = section[part]
    if config.data.train:
        raise _fail("data.train", config.data.train, "''", f"{why} trains on its own rounds")
    if not section.prompts:
        raise _fail(f"{key}.prompts", section.prompts, "a prompt file", why)
    if bool(section.reward_fn) == bool(section.reward_model):
        raise _fail(
            f"{key}.reward_fn",
            section.reward_fn,
            f"exactly one of {key}.reward_fn ('module:function') and {key}.reward_model "
            "(an HF folder)",
            f"{key}.reward_model is {section.reward_model!r}",
        )


def check_online(config: ml_collections.ConfigDict, paired: bool) -> None:
    """Rules for a semi-online run (`dpo.online.every > 0`); nothing to check offline."""
    online = config.dpo.online
    if online.every <= 0:
        return
    why = "a semi-online run"
    if not paired:
        raise _fail(
            "dpo.loss_type", config.dpo.loss_type, "a paired loss type", f"{why} trains on pairs"
        )
    if config.dpo.reference != "live":
        raise _fail("dpo.reference", config.dpo.reference, "'live'", f"{why} makes new data")
    check_rounds(config, "dpo.online", why)
    from jalign.train.objectives.preference import needs_reference

    if online.reference == "refresh" and not needs_reference(config):
        raise _fail(
            "dpo.online.reference",
            "refresh",
            "'fixed'",
            f"loss_type={config.dpo.loss_type!r} has no reference",
        )

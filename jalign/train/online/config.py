"""The `dpo.online` config section and its rules across keys."""

from __future__ import annotations

import ml_collections

from jalign.errors import JalignError
from jalign.train.online.pairs import PAIR_MODES

REFERENCE_UPDATES = ("fixed", "refresh")

ONLINE_DEFAULTS = {
    "every": 0,  # steps per round; 0 = offline (train on data.train)
    "prompts": "",  # prompt records {"prompt": ...} to sample from
    "prompts_per_round": 64,  # prompts sampled per round (cycling through a seeded shuffle)
    "samples": 4,  # k completions per prompt
    "temperature": 1.0,
    "max_new_tokens": 64,
    "batch_size": 64,  # prompts per sampling call
    "reward_fn": "",  # "module:function", (prompts, completions) -> scores
    "reward_model": "",  # or: an HF folder of a scalar-head reward model
    "pairs": "best_worst",  # see jalign.train.online.pairs
    "min_margin": 0.0,  # a prompt gives a pair only if chosen - rejected score > this
    "reference": "fixed",  # "refresh": reference := current policy at each round
}
ONLINE_CHOICES = {"pairs": PAIR_MODES, "reference": REFERENCE_UPDATES}


def _fail(key: str, value: object, allowed: str, why: str = "") -> JalignError:
    because = f" ({why})" if why else ""
    return JalignError(f"config key '{key}' is {value!r}{because}; allowed: {allowed}")


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
    if config.data.train:
        raise _fail("data.train", config.data.train, "''", f"{why} trains on its own rounds")
    if not online.prompts:
        raise _fail("dpo.online.prompts", online.prompts, "a prompt file", why)
    if bool(online.reward_fn) == bool(online.reward_model):
        raise _fail(
            "dpo.online.reward_fn",
            online.reward_fn,
            "exactly one of dpo.online.reward_fn ('module:function') and "
            "dpo.online.reward_model (an HF folder)",
            f"dpo.online.reward_model is {online.reward_model!r}",
        )
    from jalign.train.objectives.preference import needs_reference

    if online.reference == "refresh" and not needs_reference(config):
        raise _fail(
            "dpo.online.reference",
            "refresh",
            "'fixed'",
            f"loss_type={config.dpo.loss_type!r} has no reference",
        )

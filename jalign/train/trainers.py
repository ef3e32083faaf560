"""The registry of trainers: `jalign <name> --config FILE` = the loop + that objective."""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from jalign.config import load_config
from jalign.errors import JalignError
from jalign.train.loop import TrainResult, train
from jalign.train.objective import Objective
from jalign.train.schema import base_defaults, base_schema


def objectives() -> dict[str, Objective]:
    from jalign.train.objectives.preference import PREFERENCE_OBJECTIVE
    from jalign.train.objectives.reward import REWARD_OBJECTIVE
    from jalign.train.objectives.rft import RFT_OBJECTIVE
    from jalign.train.objectives.sft import SFT_OBJECTIVE

    trainers = (SFT_OBJECTIVE, REWARD_OBJECTIVE, PREFERENCE_OBJECTIVE, RFT_OBJECTIVE)
    return {o.name: o for o in trainers}


def trainer_schema(objective: Objective):
    defaults = base_defaults()
    defaults[objective.name] = objective.section()
    prefix = f"{objective.name}."
    return base_schema(
        defaults,
        choices={prefix + k: v for k, v in objective.choices.items()},
        checks={prefix + k: v for k, v in objective.checks.items()},
    )


def load_trainer_config(
    name: str, path: str, overrides: Sequence[str] = ()
) -> tuple[ml_collections.ConfigDict, Objective]:
    registry = objectives()
    if name not in registry:
        raise JalignError(f"unknown trainer {name!r}; allowed: {', '.join(registry)}")
    objective = registry[name]
    return load_config(path, list(overrides), trainer_schema(objective)), objective


def run_trainer(name: str, path: str, overrides: Sequence[str] = ()) -> TrainResult:
    cfg, objective = load_trainer_config(name, path, overrides)
    return train(cfg, objective)

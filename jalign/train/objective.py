"""`Objective`: everything that distinguishes one trainer from another.

The training loop (`jalign.train.loop`) does not know the loss. SFT, reward modeling and the
DPO family are each an `Objective`: a data kind, a model head, a config section with its
defaults, a loss builder and optional frozen inputs (a reference model) and post-processing
(the reward model's bias normalisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from flax import nnx

from jalign.config import Check
from jalign.train.state import LossFn


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What an objective may read while building its pieces."""

    config: ml_collections.ConfigDict
    graphdef: nnx.GraphDef
    model_config: Any
    mesh: Any
    tokenizer: Any


@dataclasses.dataclass(frozen=True)
class Objective:
    """A trainer = the shared loop + one of these.

    name: the CLI command and config section name (`jalign sft`, `config.sft`).
    data_kind: the record kind its data pipeline reads (see `jalign.data.KINDS`).
    head: model head, "lm" or "scalar".
    defaults: the objective's own config section.
    make_loss: RunContext -> loss_fn(params, frozen, batch, rng) -> (loss, aux).
    make_frozen: (RunContext, initial params) -> pytree kept fixed in the train state.
    eval_frozen: (RunContext, frozen) -> the frozen inputs evaluation uses (e.g. the eval set's
        precomputed reference table); None uses the training ones.
    finalize: (RunContext, final state, evaluator) -> (params, extra metrics), run once after
        training (e.g. reward centring); None keeps the params as they are.
    choices / checks: schema additions for the objective's section.
    """

    name: str
    data_kind: str
    head: str
    defaults: Mapping[str, Any]
    make_loss: Callable[[RunContext], LossFn]
    make_frozen: Callable[[RunContext, Any], Any] | None = None
    eval_frozen: Callable[[RunContext, Any], Any] | None = None
    finalize: Callable[..., tuple[Any, dict]] | None = None
    choices: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    checks: Mapping[str, Check] = dataclasses.field(default_factory=dict)

    def section(self) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict(dict(self.defaults))

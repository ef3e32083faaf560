"""`Objective`: everything that distinguishes one trainer from another.

The training loop (`jalign.train.loop`) does not know the loss. SFT, reward modeling and the
DPO family are each an `Objective`: a data kind, a model head, a config section with its
defaults, a loss builder and optional frozen inputs (a reference model) and post-processing
(the reward model's bias normalisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import ml_collections
from flax import nnx

from jalign.config import Check
from jalign.train.state import LossFn, TrainState


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What an objective may read while building its pieces."""

    config: ml_collections.ConfigDict
    graphdef: nnx.GraphDef
    model_config: Any
    mesh: Any
    tokenizer: Any


class TrainingData(Protocol):
    """Where the loop's training batches come from, with a checkpointable position.

    `prepare(step, state)` runs before each step and may start new data (a semi-online round)
    and change the state (a refreshed reference); it returns the state and metrics to log
    (empty when nothing happened). `get_state()` is stored with every checkpoint and
    `set_state()` continues from it. `name` says what the data is in errors; `stats` counts
    skipped and truncated records (or is None).
    """

    name: str
    stats: Any

    def prepare(self, step: int, state: TrainState) -> tuple[TrainState, dict[str, float]]: ...

    def __next__(self) -> dict: ...

    def get_state(self) -> dict: ...

    def set_state(self, state: dict) -> None: ...


@dataclasses.dataclass(frozen=True)
class Objective:
    """A trainer = the shared loop + one of these.

    name: the CLI command and config section name (`jalign sft`, `config.sft`).
    data_kind: the record kind its data pipeline reads (see `jalign.data.KINDS`), or a function
        of the run config that picks it (the DPO family reads pairs, unpaired or ranked records
        depending on its loss type); read it with `kind(config)`.
    head: model head, "lm" or "scalar".
    defaults: the objective's own config section.
    make_loss: RunContext -> loss_fn(params, frozen, batch, rng) -> (loss, aux).
    make_frozen: (RunContext, initial params) -> pytree kept fixed in the train state.
    make_data: (RunContext, batch_size) -> a `TrainingData` that replaces the static pipeline
        over `data.train` (semi-online training generates its data between steps); None, or a
        None result, reads `data.train`.
    eval_frozen: (RunContext, frozen) -> the frozen inputs evaluation uses (e.g. the eval set's
        precomputed reference table); None uses the training ones.
    finalize: (RunContext, final state, evaluator) -> (params, extra metrics), run once after
        training (e.g. reward centring); None keeps the params as they are.
    choices / checks: schema additions for the objective's section.
    validate: config -> None, raising JalignError for a combination of keys the objective
        cannot run (rules across keys, which per-key `checks` cannot state); run first.
    """

    name: str
    data_kind: str | Callable[[ml_collections.ConfigDict], str]
    head: str
    defaults: Mapping[str, Any]
    make_loss: Callable[[RunContext], LossFn]
    make_frozen: Callable[[RunContext, Any], Any] | None = None
    make_data: Callable[[RunContext, int], TrainingData | None] | None = None
    eval_frozen: Callable[[RunContext, Any], Any] | None = None
    finalize: Callable[..., tuple[Any, dict]] | None = None
    choices: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    checks: Mapping[str, Check] = dataclasses.field(default_factory=dict)
    validate: Callable[[ml_collections.ConfigDict], None] | None = None

    def section(self) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict(dict(self.defaults))

    def kind(self, config: ml_collections.ConfigDict) -> str:
        """The data kind a run with `config` reads."""
        return self.data_kind(config) if callable(self.data_kind) else self.data_kind

"""The training loop shared by every trainer that learns from a data set (SFT, reward
modeling, the DPO family offline and semi-online).

    result = train(config, objective)

One pass does: resolve and save the config; build the mesh; load the tokenizer and the model
straight onto the mesh; build the optimizer and the train state; compile the step once per
batch shape; restore the last complete checkpoint of the run directory (params, optimizer
state, step, rng and the data iterator's position) if there is one; then step, log, evaluate
and checkpoint until `train.total_steps`; finally run the objective's `finalize` and export the
weights as an HF folder. The training data is a pipeline over `data.train` unless the objective
supplies its own (`Objective.make_data`: semi-online rounds). A run killed at any point resumes from its last checkpoint and
produces the same losses, step for step, as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jalign.checkpoint import CheckpointManager, check_finite
from jalign.config import save_config
from jalign.data import DataConfig, DataPipeline
from jalign.errors import JalignError
from jalign.metrics import MetricsLogger, Throughput
from jalign.sharding import batch_sharding, make_mesh, shard_batch
from jalign.train.model_setup import (
    LoadedModel,
    export_model,
    load_model,
    load_run_tokenizer,
    state_shardings,
)
from jalign.train.objective import Objective, RunContext, TrainingData
from jalign.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer
from jalign.train.state import TrainState, compile_step, init_train_state, make_train_step

log = logging.getLogger(__name__)

_PATH_KEYS = ("train", "eval")


@dataclasses.dataclass
class TrainResult:
    """What a finished run leaves: its directory, final params and the last metrics."""

    run_dir: Path
    model: LoadedModel
    params: Any
    metrics: dict[str, float]
    eval_metrics: dict[str, float]

    def summary(self) -> dict[str, dict[str, float]]:
        return {"train": self.metrics, "eval": self.eval_metrics}


def data_config(cfg: ml_collections.ConfigDict, **changes: Any) -> DataConfig:
    options = {k: v for k, v in cfg.data.to_dict().items() if k not in _PATH_KEYS}
    return DataConfig.from_mapping({**options, **changes})


def _batch_tokens(batch: dict) -> int:
    """Real (non-padding) tokens in a batch, over every sequence field."""
    return int(
        sum((np.asarray(v) > 0).sum() for k, v in batch.items() if k.endswith("segment_ids"))
    )


class StaticData:
    """The default `TrainingData`: one pipeline over a fixed file."""

    def __init__(self, path: str, kind: str, tokenizer: Any, cfg: DataConfig, batch_size: int):
        if not path:
            raise JalignError(
                "config key 'data.train' is empty; set it to a JSONL/parquet/dataset path"
            )
        self.name = str(path)
        self._batches = DataPipeline(path, kind, tokenizer, cfg, batch_size).iterator()
        self.stats = self._batches.stats

    def prepare(self, step: int, state: TrainState) -> tuple[TrainState, dict[str, float]]:
        del step
        return state, {}

    def __next__(self) -> dict:
        return next(self._batches)

    def get_state(self) -> dict:
        return self._batches.get_state()

    def set_state(self, state: dict) -> None:
        self._batches.set_state(state)


def _device_batch(batch: dict, mesh) -> dict:
    arrays = {k: v for k, v in batch.items() if isinstance(v, np.ndarray)}
    return shard_batch(arrays, mesh)


class _Evaluator:
    """Mean of the loss function's metrics over the first `eval_batches` of the eval set."""

    def __init__(self, ctx: RunContext, objective: Objective, loss_fn, batch_size: int):
        cfg = ctx.config
        self.enabled = bool(cfg.data.eval)
        if not self.enabled:
            return
        eval_data = data_config(cfg, shuffle=False, num_epochs=1, drop_remainder=False)
        self.pipeline = DataPipeline(
            cfg.data.eval, objective.kind(cfg), ctx.tokenizer, eval_data, batch_size
        )
        self.max_batches = cfg.train.eval_batches
        self.mesh = ctx.mesh

        def metrics_fn(params, frozen, batch):
            loss, aux = loss_fn(params, frozen, batch, jax.random.key(0))
            return {"loss": loss, **aux["metrics"]}, aux["weight"]

        self.metrics_fn = jax.jit(metrics_fn)
        self.frozen_for_eval = (
            (lambda frozen: objective.eval_frozen(ctx, frozen))
            if objective.eval_frozen
            else (lambda frozen: frozen)
        )

    def batches(self) -> Iterator[dict]:
        iterator = self.pipeline.iterator()
        for _, batch in zip(range(self.max_batches), iterator, strict=False):
            yield batch

    def __call__(self, state: TrainState) -> dict[str, float]:
        totals: dict[str, float] = {}
        weight_total = 0.0
        for batch in self.batches():
            metrics, weight = self.metrics_fn(
                state.params, self.frozen_for_eval(state.frozen), _device_batch(batch, self.mesh)
            )
            metrics, weight = jax.device_get((metrics, weight))
            weight_total += float(weight)
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + float(value) * float(weight)
        return {name: value / max(weight_total, 1e-12) for name, value in totals.items()}


def train(cfg: ml_collections.ConfigDict, objective: Objective) -> TrainResult:
    """Run (or resume) one training run described by `cfg`."""
    if objective.validate is not None:
        objective.validate(cfg)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir)

    mesh = make_mesh(cfg.mesh)
    tokenizer = load_run_tokenizer(cfg)
    model = load_model(cfg, mesh, head=objective.head)
    ctx = RunContext(cfg, model.graphdef, model.config, mesh, tokenizer)

    opt_values = cfg.optimizer.to_dict()
    opt_values["total_steps"] = opt_values["total_steps"] or cfg.train.total_steps
    opt_cfg = OptimizerConfig(**opt_values)
    optimizer = make_optimizer(opt_cfg)
    frozen = objective.make_frozen(ctx, model.params) if objective.make_frozen else None
    shardings = state_shardings(model, optimizer, frozen)
    state = jax.jit(
        lambda params, frozen: init_train_state(params, optimizer, cfg.seed, frozen),
        out_shardings=shardings,
    )(model.params, frozen)

    loss_fn = objective.make_loss(ctx)
    step_fn = compile_step(
        make_train_step(
            loss_fn, optimizer, cfg.train.grad_accum_steps, learning_rate_schedule(opt_cfg)
        ),
        shardings,
        batch_sharding(mesh),
    )
    batch_size = cfg.train.batch_size * cfg.train.grad_accum_steps
    batches: TrainingData | None = (
        objective.make_data(ctx, batch_size) if objective.make_data else None
    )
    if batches is None:
        batches = StaticData(
            cfg.data.train, objective.kind(cfg), tokenizer, data_config(cfg), batch_size
        )
    evaluator = _Evaluator(ctx, objective, loss_fn, cfg.train.batch_size)

    checkpoints = CheckpointManager(
        run_dir / "checkpoints",
        save_every=cfg.train.save_every,
        max_to_keep=cfg.train.keep_checkpoints,
    )
    abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )
    start_step = 0
    restored = checkpoints.restore_or_none(abstract_state)
    if restored is not None:
        start_step, state, metadata = restored
        batches.set_state(metadata["data"])
        log.info("resumed %s at step %d", run_dir, start_step)

    total = cfg.train.total_steps
    throughput = Throughput()
    metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    last_saved = start_step if restored is not None else None
    with MetricsLogger(
        run_dir, resume_step=start_step if restored is not None else None, total_steps=total
    ) as logger:
        for step in range(start_step + 1, total + 1):
            state, data_metrics = batches.prepare(step, state)
            if data_metrics:
                logger.log(step, data_metrics)
            try:
                batch = next(batches)
            except StopIteration:
                raise JalignError(
                    f"{batches.name}: the data ran out at step {step} of {total}; raise "
                    "data.num_epochs (None repeats forever) or lower train.total_steps"
                ) from None
            state, step_metrics = step_fn(state, _device_batch(batch, mesh))
            throughput.update(step, _batch_tokens(batch))
            is_last = step == total
            # Checked before every save too, so no checkpoint follows a non-finite step.
            if step % cfg.train.log_every == 0 or step % cfg.train.save_every == 0 or is_last:
                metrics = logger.log(step, {**step_metrics, **throughput.rates()})
                check_finite(metrics, step, last_saved)
            if evaluator.enabled and (step % cfg.train.eval_every == 0 or is_last):
                eval_metrics = evaluator(state)
                logger.log(step, {"eval": eval_metrics})
            if checkpoints.save(step, state, {"data": batches.get_state()}, force=is_last):
                last_saved = step
        checkpoints.close()

        params = state.params
        if objective.finalize is not None:
            params, final_metrics = objective.finalize(ctx, state, evaluator)
            logger.log(total, final_metrics)
            metrics.update(final_metrics)
    stats = batches.stats.summary() if batches.stats is not None else ""
    if stats:
        log.info("data: %s", stats)
    if cfg.train.export_hf:
        export_model(model, params, run_dir / "hf", tokenizer)
    return TrainResult(run_dir, model, params, metrics, eval_metrics)

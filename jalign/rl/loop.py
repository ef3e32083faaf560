"""The online RL loop shared by `jalign ppo` and `jalign grpo`.

Each iteration (one logged / checkpointed step):

1. rollout: the next `train.batch_size` prompts (a "prompt" data pipeline), `rl.n`
   completions each from `jalign.sampling.generate` on the policy's current params (no copy),
   with rng = fold_in(key(seed), iteration);
2. scoring: the weighted reward sources, the missing-EOS penalty, clipping / whitening;
3. forward: the policy's log-probs (the "old" log-probs, at the sampling temperature; or the
   sampler's, rl.old_logprobs), the frozen reference's, and PPO's values, as one compiled
   program over micro-batch-sized chunks (the first minibatch of the first epoch takes its own
   detached log-probs as the old ones, so its ratio is exactly 1: `jalign.rl.losses`);
4. advantages (`jalign.rl.advantages`) and the KL coefficient;
5. update: `rl.epochs` shuffled passes of minibatch steps (`make_train_step`, policy and value
   each with their own `TrainState` and optimizer, compiled together as one `joint_step`), the
   minibatches stacked and placed on the mesh at once and the steps run as one compiled
   `scan_steps`, so an update is one dispatch and one read-back of its metrics.

Checkpoints hold both train states plus, as metadata, the prompt iterator's position and the
KL coefficient; the sampler's and the shuffles' rngs derive from (seed, iteration), so a
resumed run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jalign.checkpoint import CheckpointManager, check_finite
from jalign.config import save_config
from jalign.data import PROMPT, SFT, DataPipeline
from jalign.errors import JalignError
from jalign.losses import KLControllerConfig, explained_variance, update_kl_coef
from jalign.metrics import MetricsLogger
from jalign.rl.advantages import AdvantageConfig, compute_advantages
from jalign.rl.forward import forward_in_chunks, rollout_forward
from jalign.rl.losses import make_policy_loss, make_value_loss
from jalign.rl.metrics import PhaseTimer, mean_metrics, rollout_metrics
from jalign.rl.rewards import combine, shape_scores
from jalign.rl.rollout import Rollout, build_rollout
from jalign.rl.schema import check_sizes, prompt_group
from jalign.rl.setup import FrozenParams, cast_frozen, reward_sources, value_model
from jalign.sampling import PromptBatch, SamplingParams, generate
from jalign.sharding import batch_sharding, make_mesh, shard_batch
from jalign.train.forward import ROW_KEYS
from jalign.train.loop import data_config
from jalign.train.model_setup import (
    LoadedModel,
    export_model,
    load_model,
    load_run_tokenizer,
    state_shardings,
)
from jalign.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer
from jalign.train.state import (
    StepFn,
    TrainState,
    compile_step,
    init_train_state,
    joint_step,
    make_train_step,
    scan_steps,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Trainee:
    """A trained model: its weights on the mesh, its train state and its (uncompiled) step."""

    model: LoadedModel
    state: TrainState
    step: StepFn
    shardings: Any


def _trainee(cfg, model: LoadedModel, loss_fn, lr: float, updates: int, seed: int) -> _Trainee:
    values = cfg.optimizer.to_dict()
    values.update(lr=lr, total_steps=values["total_steps"] or updates)
    opt_cfg = OptimizerConfig(**values)
    optimizer = make_optimizer(opt_cfg)
    shardings = state_shardings(model, optimizer, None)
    init = jax.jit(lambda p: init_train_state(p, optimizer, seed), out_shardings=shardings)
    state = init(model.params)
    # The state may hold `model.params` themselves, and the step donates its state: keep no
    # second handle on them (the reference is a separate copy, see `cast_frozen`).
    model = dataclasses.replace(model, params=None)
    step = make_train_step(
        loss_fn, optimizer, cfg.train.grad_accum_steps, learning_rate_schedule(opt_cfg)
    )
    return _Trainee(model, state, step, shardings)


def shuffled_rows(rng: np.random.Generator, rows: int, group: int) -> np.ndarray:
    """A random order of `rows` rows that keeps each group of `group` consecutive rows (one
    prompt's samples) together and in order; group 1 is `rng.permutation(rows)`."""
    groups = rng.permutation(rows // group)
    return (groups[:, None] * group + np.arange(group)).reshape(-1)


def _step_metrics(metrics: dict[str, dict]) -> dict:
    """One update step's metrics from its trainees' ({"policy": ..., ["value": ...]}): the
    policy's as they are, the value model's named ones, each grad norm under its model's
    prefix, and `nonfinite` summed over both."""
    out = dict(metrics["policy"])
    out = {"policy/grad_norm": out.pop("grad_norm"), **out}
    if "value" in metrics:
        value = metrics["value"]
        out.update({k: v for k, v in value.items() if "/" in k})
        out["val/grad_norm"] = value["grad_norm"]
        out["nonfinite"] = out["nonfinite"] + value["nonfinite"]
    return out


class RLRun:
    """One RL run (fresh or resumed from its run directory) on `cfg.mesh` over `devices`
    (default: all). `run()` trains to the end; the phases are separate methods so tests can
    drive and inspect one iteration."""

    def __init__(self, cfg: ml_collections.ConfigDict, devices: list | None = None):
        check_sizes(cfg)
        if not cfg.data.train:
            raise JalignError("config key 'data.train' is empty; set it to a prompt JSONL path")
        self.cfg = cfg
        self.rl = rl = cfg.rl
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.run_dir)
        self.mesh = make_mesh(cfg.mesh, devices)
        self.tokenizer = load_run_tokenizer(cfg)
        self.rows = cfg.train.batch_size * rl.n
        self.micro = rl.minibatch_size // cfg.train.grad_accum_steps
        updates = cfg.train.total_steps * rl.epochs * (self.rows // rl.minibatch_size)
        self.put = lambda arrays: shard_batch(arrays, self.mesh)
        self.put_steps = lambda arrays: shard_batch(arrays, self.mesh, row_axis=1)

        policy = load_model(cfg, self.mesh, head="lm")
        self.eos_id = (policy.config.eos_token_ids or (-1,))[0]
        self.reference = FrozenParams(
            cast_frozen(policy.params, rl.frozen_dtype), rl.offload_frozen
        )
        self.policy = _trainee(
            cfg, policy, make_policy_loss(policy.graphdef, rl), cfg.optimizer.lr, updates, cfg.seed
        )
        self.value = None
        if rl.estimator == "gae":
            critic = value_model(cfg, self.mesh)
            self.value = _trainee(
                cfg,
                critic,
                make_value_loss(critic.graphdef, rl),
                rl.value_lr or cfg.optimizer.lr,
                updates,
                cfg.seed + 1,
            )
        trainees = self._trainees()
        self._update_steps = compile_step(
            scan_steps(joint_step({name: t.step for name, t in trainees.items()})),
            {name: t.shardings for name, t in trainees.items()},
            batch_sharding(self.mesh, row_axis=1),
        )
        critic = self.value.model.graphdef if self.value is not None else None
        self._prepare = jax.jit(
            functools.partial(
                rollout_forward, policy.graphdef, critic, rl.temperature, prompt_group(rl)
            )
        )
        self.rewards = reward_sources(cfg, self.mesh, self.micro, self.put, rl.rewards)
        self.monitors = reward_sources(cfg, self.mesh, self.micro, self.put, rl.monitor_rewards)
        self.sampling = SamplingParams(
            temperature=rl.temperature, n=rl.n, max_new_tokens=rl.max_new_tokens, seed=cfg.seed
        )
        self.kl_control = KLControllerConfig(
            rl.kl_controller, rl.kl_coef, rl.kl_target, rl.kl_horizon
        )
        self.kl_coef = float(rl.kl_coef)
        pipeline = DataPipeline(
            cfg.data.train, PROMPT, self.tokenizer, data_config(cfg), cfg.train.batch_size
        )
        self.prompts = pipeline.iterator()
        self.ptx = None
        if rl.ptx_coef > 0:
            ptx_data = data_config(
                cfg, max_length=rl.ptx_max_length, max_prompt_length=None, buckets=None
            )
            self.ptx = DataPipeline(
                rl.ptx_data, SFT, self.tokenizer, ptx_data, rl.minibatch_size
            ).iterator()
        self.checkpoints = CheckpointManager(
            self.run_dir / "checkpoints",
            save_every=cfg.train.save_every,
            max_to_keep=cfg.train.keep_checkpoints,
        )
        self.iteration = 0
        self.update_metrics: list[dict] = []  # every step's metrics of the last update
        self._restore()

    # --- state -------------------------------------------------------------------------
    def _trainees(self) -> dict[str, _Trainee]:
        trainees = {"policy": self.policy}
        if self.value is not None:
            trainees["value"] = self.value
        return trainees

    def _states(self) -> dict[str, TrainState]:
        return {name: trainee.state for name, trainee in self._trainees().items()}

    def _restore(self) -> None:
        trainees = self._trainees()
        abstract = {
            name: jax.tree.map(
                lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                state,
                trainees[name].shardings,
            )
            for name, state in self._states().items()
        }
        restored = self.checkpoints.restore_or_none(abstract)
        if restored is None:
            return
        self.iteration, states, metadata = restored
        for name, state in states.items():
            trainees[name].state = state
        self.prompts.set_state(metadata["data"])
        if self.ptx is not None:
            self.ptx.set_state(metadata["ptx_data"])
        self.kl_coef = float(metadata["kl_coef"])
        log.info("resumed %s at iteration %d", self.run_dir, self.iteration)

    def _order(self, iteration: int, epoch: int) -> np.ndarray:
        """Row order of `epoch`'s minibatches (a fixed function of seed, iteration, epoch):
        a shuffle of the rows, or with rl.share_prompt_forward of the prompts' groups of
        rl.n rows, each group kept whole and in order."""
        rng = np.random.default_rng([self.cfg.seed, iteration, epoch])
        return shuffled_rows(rng, self.rows, prompt_group(self.rl))

    # --- phases ------------------------------------------------------------------------
    def rollout(self, iteration: int) -> Rollout:
        try:
            batch = next(self.prompts)
        except StopIteration:
            raise JalignError(
                f"{self.cfg.data.train}: the prompts ran out at iteration {iteration}; set "
                "data.num_epochs=None (repeat) or lower train.total_steps"
            ) from None
        prompts = PromptBatch(batch["prompt_ids"], batch["prompt_segment_ids"])
        key = jax.random.fold_in(jax.random.key(self.cfg.seed), iteration)
        sample = generate(
            self.policy.model.graphdef,
            self.policy.state.params,
            prompts,
            self.sampling,
            key,
            mesh=self.mesh,
        )
        return build_rollout(sample, batch["prompt"], self.rl.n, self.tokenizer)

    def score(self, rollout: Rollout) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """(raw combined scores [R], shaped scores [R], per-source mean rewards)."""
        scores, parts = combine(self.rewards, self.rl.reward_weights, rollout)
        if self.monitors:
            parts.update(combine(self.monitors, [], rollout)[1])
        shaped = shape_scores(
            scores,
            rollout.completion_ids,
            rollout.completion_mask,
            self.eos_id,
            self.rl.missing_eos_penalty,
            self.rl.score_clip,
            self.rl.whiten_scores,
        )
        return scores, shaped, {f"reward/{k}": float(v.mean()) for k, v in parts.items()}

    def forward(self, rollout: Rollout, iteration: int) -> dict[str, np.ndarray]:
        """Old and reference log-probs, entropies and (PPO) values, computed in the first
        epoch's micro-batch order and shape. With rl.old_logprobs="sampler" the old log-probs
        are the sampler's, and the entropy is its one-sample estimate -log pi(y_t) (the
        expectation of which is the entropy)."""
        seqs = rollout.sequences()
        order = self._order(iteration, 0)
        recompute = self.rl.old_logprobs == "recompute"
        policy_params = self.policy.state.params if recompute else None
        value_params = self.value.state.params if self.value is not None else None
        with self.reference.on_device() as reference:
            params = (policy_params, reference, value_params)
            out = forward_in_chunks(self._prepare, params, seqs, order, self.micro, self.put)
        if not recompute:
            out["old_logp"] = rollout.sample_logprobs * rollout.completion_mask
            out["entropy"] = -out["old_logp"]
        return out

    def advantages(self, shaped: np.ndarray, fwd: dict, mask: np.ndarray) -> dict:
        rl = self.rl
        cfg = AdvantageConfig(
            rl.estimator,
            rl.n,
            self.kl_coef,
            rl.kl_in == "reward",
            rl.kl_estimator,
            rl.gamma,
            rl.lam,
            rl.whiten_advantages,
        )
        advantages, returns, _ = compute_advantages(
            cfg, shaped, fwd["old_logp"], fwd["ref_logp"], mask, fwd.get("old_values")
        )
        out = {"advantages": advantages}
        if returns is not None:
            out["returns"] = returns
        return out

    def update(self, data: dict[str, np.ndarray], iteration: int) -> dict[str, float]:
        """`rl.epochs` passes of minibatch steps over `data` ([R, ...] host arrays), run as one
        compiled scan over the stacked minibatches [steps, minibatch, ...]."""
        mb = self.rl.minibatch_size
        keys = {"policy": ("input_ids", "positions", "segment_ids", "completion_mask")}
        keys["value"] = (*keys["policy"], "old_values", "returns")
        keys["policy"] += ("old_logp", "ref_logp", "advantages", "kl_coef", "on_policy")
        rows = np.stack(
            [
                self._order(iteration, epoch)[start : start + mb]
                for epoch in range(self.rl.epochs)
                for start in range(0, self.rows, mb)
            ]
        )
        stacked = {k: v[rows] for k, v in data.items()}
        stacked["on_policy"] = np.zeros(rows.shape, np.float32)
        stacked["on_policy"][0] = 1.0  # the first minibatch of the first epoch
        if self.ptx is not None:
            keys["policy"] += tuple(f"ptx_{k}" for k in ROW_KEYS)
            sft = [next(self.ptx) for _ in range(len(rows))]
            stacked.update({f"ptx_{k}": np.stack([b[k] for b in sft]) for k in ROW_KEYS})
        trainees = self._trainees()
        batches = {n: self.put_steps({k: stacked[k] for k in keys[n]}) for n in trainees}
        states, metrics = self._update_steps(self._states(), batches)
        for name, trainee in trainees.items():
            trainee.state = states[name]
        metrics = jax.device_get(metrics)
        self.update_metrics = [
            _step_metrics(jax.tree.map(lambda x, i=i: x[i], metrics)) for i in range(len(rows))
        ]
        return mean_metrics(self.update_metrics)

    def iterate(self, iteration: int) -> dict[str, float]:
        """One full iteration; returns its metrics."""
        timer = PhaseTimer()
        with timer("rollout"):
            rollout = self.rollout(iteration)
        with timer("scoring"):
            scores, shaped, reward_means = self.score(rollout)
        with timer("forward"):
            fwd = self.forward(rollout, iteration)
        mask = rollout.completion_mask
        data = {**rollout.sequences(), **fwd}
        data.update(self.advantages(shaped, fwd, mask))
        data["kl_coef"] = np.full((self.rows,), self.kl_coef, np.float32)
        with timer("update"):
            update = self.update(data, iteration)
        seq_kl = ((fwd["old_logp"] - fwd["ref_logp"]) * mask).sum(axis=1)
        metrics = {
            **rollout_metrics(rollout, scores, seq_kl, fwd["entropy"], self.kl_coef),
            **reward_means,
            **update,
            **timer.metrics(),
        }
        if self.rl.old_logprobs == "recompute":
            # recomputed vs sampler log-probs: float rounding only (same distribution)
            metrics["rollout/logprob_mismatch"] = float(
                np.abs((fwd["old_logp"] - rollout.sample_logprobs) * mask).max()
            )
        if self.value is not None:
            metrics["val/explained_variance"] = float(
                explained_variance(fwd["old_values"], data["returns"], mask)
            )
        self.kl_coef = float(
            update_kl_coef(self.kl_coef, float(seq_kl.mean()), self.rows, self.kl_control)
        )
        return metrics

    def run(self) -> dict[str, float]:
        cfg = self.cfg
        total = cfg.train.total_steps
        start = self.iteration
        metrics: dict[str, float] = {}
        last_saved = start or None
        with MetricsLogger(self.run_dir, resume_step=start or None, total_steps=total) as logger:
            for iteration in range(start + 1, total + 1):
                metrics = self.iterate(iteration)
                self.iteration = iteration
                is_last = iteration == total
                if iteration % cfg.train.log_every == 0 or is_last:
                    metrics = logger.log(iteration, metrics)
                check_finite(metrics, iteration, last_saved)
                meta = {"data": self.prompts.get_state(), "kl_coef": self.kl_coef}
                if self.ptx is not None:
                    meta["ptx_data"] = self.ptx.get_state()
                if self.checkpoints.save(iteration, self._states(), meta, force=is_last):
                    last_saved = iteration
        self.checkpoints.close()
        if cfg.train.export_hf:
            export_model(
                self.policy.model, self.policy.state.params, self.run_dir / "hf", self.tokenizer
            )
        return metrics


def train_rl(cfg: ml_collections.ConfigDict) -> tuple[Path, dict[str, float]]:
    """Run (or resume) the RL run `cfg` describes; returns (run_dir, last metrics)."""
    run = RLRun(cfg)
    return run.run_dir, run.run()

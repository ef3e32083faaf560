"""Online RL iteration speed: jalign's RL loop vs TRL's online trainers (PyTorch CPU), on the
same models, batch, lengths, epochs and minibatches, measured in one run.

    .venv/bin/python tools/bench_rl.py [--quick]

Two like-for-like pairs:

- PPO: jalign PPO (GAE over a value model initialised from the reward model, k1 KL in the reward,
  clipped value loss) vs TRL's `PPOTrainer`. TRL removed its PPO trainer after 1.12.0
  (`trl.experimental.ppo`, huggingface/trl#7020); 1.12.0 is the last release that has it and it
  runs on the same transformers / accelerate / torch as TRL 1.16.0, so `tools/setup.sh --bench`
  installs it without dependencies into `.venv/peers/trl-1.12.0` and the PPO peer's child process
  imports it from there. TRL's PPO samples one completion per prompt: it gets each prompt n times,
  so both sides roll out the same 64 rows. TRL updates policy and value model together (one
  optimizer, loss = policy loss + vf_coef * value loss, one backward through both), jalign in two
  steps; both do `epochs` passes of minibatches of `minibatch` rows (TRL: per_device_train_batch_size
  = the rollout batch, num_mini_batches = rows / minibatch, no gradient accumulation). TRL takes
  the old log-probs from `generate`'s logits; jalign likewise from its sampler
  (rl.old_logprobs = "sampler"), so neither runs a policy forward before the update.
- GRPO: jalign GRPO (group-normalised advantages, k3 KL to the reference in the loss with
  beta = kl_coef, token-mean loss, no value model) vs TRL 1.16.0's `GRPOTrainer`; both recompute
  the old log-probs with a forward pass (TRL does with num_iterations > 1).

jalign runs with its defaults, `rl.share_prompt_forward` among them: each prompt goes through a
model once for its n samples (its keys / values cached and read by the n completions) in the
scoring, the forward passes and the update steps, and minibatches hold whole groups; TRL runs
every row in full and shuffles single rows. The work asked of both is the same (same rows, same
outputs up to float rounding); jalign's way to it runs 42% fewer tokens through the models
(37.5% in scoring) on these shapes (docs/algorithms/rl.md). `--no-share` turns it off.

Models: the demo task's Llama config (jalign/demo/assets, with its tokenizer), random init,
saved offline as HF folders: a `LlamaForCausalLM` (policy; the reference is a copy of it) and a
`LlamaForSequenceClassification` with one label (reward model, and PPO's value model), read by
both sides (jalign through `jalign.interop`; HF's bias-free score head loads with bias 0).
Shapes follow configs/ppo_demo.py: 16 prompts x 4 completions = 64 rows per iteration, 12 new
tokens at temperature 1 (stopping at EOS), 2 epochs of 2 minibatches of 32 rows, fp32, AdamW.
Prompts (8-12 tokens) are left-padded to the batch's longest (TRL) or to the smallest of
jalign's `data.buckets` [12, 16] that fits it.

What is timed, per iteration (the median, and the fastest, of the timed iterations, after
untimed warmup iterations that include compilation):
- jalign: the wall time of `RLRun.iterate` (rollout, scoring, forward passes, advantages,
  update, metrics on the host); the rollout share is its `time/rollout` over that.
- TRL: the time between the ends of consecutive iterations (PPO: its per-iteration
  `on_step_end`; GRPO: the last of an iteration's steps_per_generation x num_iterations optimizer
  steps), generation included; the rollout share is generation's (PPO: `batch_generation`;
  GRPO: `GRPOTrainer._generate`, tokenize + `generate` + decode) over that.
Each line also gives the share of rollout + scoring + old / reference (/ value) forwards (PPO:
`batch_generation` and the gradient-free `forward` / `get_reward` calls; GRPO:
`_generate_and_score_completions`), the rest being the update (and, for jalign, the advantages
and metrics), and the load average when that measurement ended.

Environment: jalign runs in this process, restarted with glibc's huge-page malloc tunable as the
`jalign` command does; TRL runs in child processes without it (`peer_process`), since the
tunable slowed PyTorch's training steps here. Each side is measured the way its users run it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import datasets
import ml_collections
import numpy as np
import torch
from bench_train import TRL_CPU_FP32_QUIET
from peer_process import (
    PEER_FLAG,
    measure_peer,
    quiet_peer_libraries,
    report_peer,
)
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PrinterCallback,
    TrainerCallback,
)
from trl import GRPOConfig, GRPOTrainer

from jalign.demo import paths, sample_prompts
from jalign.rl.loop import RLRun
from jalign.rl.schema import rl_schema
from jalign.runtime import prepare_command_process

LEARNING_RATE = 1e-5
KL_COEF = 0.05
CLIP_EPS = 0.2
TRL_OPTIMIZER = dict(learning_rate=LEARNING_RATE, lr_scheduler_type="constant", weight_decay=0.0)
PPO_PEER_VERSION = "1.12.0"  # the last TRL with a PPO trainer; installed by tools/setup.sh --bench
PPO_PEER_PACKAGES = Path(sys.prefix) / "peers" / f"trl-{PPO_PEER_VERSION}"


@dataclass(frozen=True)
class Shape:
    prompts: int  # per iteration
    n: int  # completions per prompt
    minibatch: int  # rows per optimizer step
    epochs: int
    new_tokens: int
    prompt_length: int  # the longest prompt (jalign pads a batch to the smallest bucket that fits)
    warmup: int  # untimed iterations
    timed: int

    @property
    def rows(self) -> int:
        return self.prompts * self.n

    @property
    def steps(self) -> int:
        """Optimizer steps per iteration."""
        return self.epochs * self.rows // self.minibatch


@dataclass(frozen=True)
class Result:
    seconds: float  # median seconds per timed iteration
    best: float  # the fastest timed iteration (the least disturbed by other processes)
    rollout_share: float  # rollout seconds / iteration seconds, summed over timed iterations
    prepare_share: float  # the same for rollout + scoring + old / reference (/ value) forwards
    load: float  # the 1-minute load average when the measurement ended


def build_models(root: Path) -> tuple[Path, Path]:
    """(policy folder, reward-model folder): the demo config, random init, with its tokenizer."""
    assets = paths()
    config = LlamaConfig.from_pretrained(assets)
    torch.manual_seed(0)
    policy, reward = root / "policy", root / "reward"
    LlamaForCausalLM(config).save_pretrained(policy)
    config.num_labels = 1
    LlamaForSequenceClassification(config).save_pretrained(reward)
    for folder in (policy, reward):
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(assets / name, folder / name)
    return policy, reward


def summarize(seconds: list[float], rollout: list[float], prepare: list[float]) -> Result:
    total = sum(seconds)
    return Result(
        float(np.median(seconds)),
        float(np.min(seconds)),
        sum(rollout) / total,
        sum(prepare) / total,
        os.getloadavg()[0],
    )


def jalign_config(
    command: str, shape: Shape, policy: Path, reward: Path, data: Path, run_dir: Path
) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(rl_schema(command).defaults.to_dict())
    cfg.run_dir = str(run_dir)
    cfg.model.path = str(policy)
    cfg.data.train, cfg.data.max_length, cfg.data.num_epochs = str(data), shape.prompt_length, None
    cfg.data.buckets = [12, shape.prompt_length]  # the demo prompts take 8-12 tokens
    cfg.train.batch_size = shape.prompts
    cfg.train.total_steps = shape.warmup + shape.timed
    cfg.train.export_hf = False
    cfg.optimizer.update(lr=LEARNING_RATE, weight_decay=0.0)
    cfg.rl.update(
        n=shape.n,
        minibatch_size=shape.minibatch,
        epochs=shape.epochs,
        max_new_tokens=shape.new_tokens,
        temperature=1.0,
        rewards=[f"model:{reward}"],
        kl_coef=KL_COEF,
        clip_eps=CLIP_EPS,
    )
    if command == "ppo":  # TRL's PPOTrainer takes the old log-probs from generate's logits
        cfg.rl.old_logprobs = "sampler"
    if command == "grpo":  # TRL GRPOTrainer's algorithm: k3 KL in the loss, token-mean
        cfg.rl.update(estimator="grpo", kl_in="loss", kl_estimator="k3")
        cfg.rl.loss_aggregation = "token-mean"
    return cfg


def bench_jalign(cfg: ml_collections.ConfigDict, shape: Shape) -> Result:
    run = RLRun(cfg)
    seconds, rollout, prepare = [], [], []
    for iteration in range(1, shape.warmup + shape.timed + 1):
        start = time.perf_counter()
        metrics = run.iterate(iteration)
        if iteration > shape.warmup:
            seconds.append(time.perf_counter() - start)
            rollout.append(metrics["time/rollout"])
            prepare.append(sum(metrics[f"time/{p}"] for p in ("rollout", "scoring", "forward")))
    return summarize(seconds, rollout, prepare)


class IterationClock(TrainerCallback):
    """Per RL iteration: the wall-clock time it ended, and the seconds spent in each timed phase
    during it. An iteration ends with every `steps_per_iteration`-th `on_step_end`."""

    def __init__(self, steps_per_iteration: int) -> None:
        self.steps_per_iteration = steps_per_iteration
        self.steps = 0
        self.ends: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.current: dict[str, float] = defaultdict(float)

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1
        if self.steps % self.steps_per_iteration == 0:
            self.ends.append(time.perf_counter())
            self.phases.append(dict(self.current))
            self.current.clear()

    def timed(self, function: Callable, phase: str, when: Callable[[], bool] = lambda: True):
        """`function`, adding the wall time of each call for which `when()` holds to `phase`."""

        def wrapper(*args, **kwargs):
            if not when():
                return function(*args, **kwargs)
            start = time.perf_counter()
            out = function(*args, **kwargs)
            self.current[phase] += time.perf_counter() - start
            return out

        return wrapper

    def result(self, warmup: int, prepare_phases: tuple[str, ...]) -> Result:
        """Timed iterations only: each lasts from the previous iteration's end to its own."""
        seconds = np.diff(self.ends)[warmup - 1 :]
        phases = self.phases[warmup:]
        return summarize(
            list(seconds),
            [p.get("rollout", 0.0) for p in phases],
            [sum(p.get(name, 0.0) for name in prepare_phases) for p in phases],
        )


def bench_trl_grpo(
    shape: Shape, policy: Path, reward: Path, prompts: list[str], out: str
) -> Result:
    iterations = shape.warmup + shape.timed
    args = GRPOConfig(
        output_dir=out,
        max_steps=iterations * shape.steps,
        per_device_train_batch_size=shape.minibatch,
        gradient_accumulation_steps=1,
        steps_per_generation=shape.rows // shape.minibatch,
        num_generations=shape.n,
        num_iterations=shape.epochs,
        max_completion_length=shape.new_tokens,
        temperature=1.0,
        beta=KL_COEF,
        epsilon=CLIP_EPS,
        loss_type="dapo",  # token-level mean over the batch: jalign's "token-mean"
        **TRL_OPTIMIZER,
        max_grad_norm=1.0,
        **TRL_CPU_FP32_QUIET,
    )
    clock = IterationClock(shape.steps)
    trainer = GRPOTrainer(
        model=str(policy),
        reward_funcs=[str(reward)],
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)
    trainer._generate = clock.timed(trainer._generate, "rollout")
    trainer._generate_and_score_completions = clock.timed(
        trainer._generate_and_score_completions, "prepare"
    )
    trainer.train()
    assert len(clock.ends) == iterations
    return clock.result(shape.warmup, ("prepare",))


def bench_trl_ppo(shape: Shape, policy: Path, reward: Path, prompts: list[str], out: str) -> Result:
    """TRL 1.12.0's PPOTrainer (imported from `PPO_PEER_PACKAGES`, see the module docstring)."""
    import trl
    from trl.experimental.ppo import PPOConfig, PPOTrainer, ppo_trainer

    assert trl.__version__ == PPO_PEER_VERSION, f"PPO peer needs TRL {PPO_PEER_VERSION}"
    iterations = shape.warmup + shape.timed
    tokenizer = AutoTokenizer.from_pretrained(policy, padding_side="left")
    rows = [p for p in prompts for _ in range(shape.n)]  # one completion per prompt in TRL's PPO
    args = PPOConfig(
        output_dir=out,
        total_episodes=iterations * shape.rows,
        per_device_train_batch_size=shape.rows,
        gradient_accumulation_steps=1,
        num_mini_batches=shape.rows // shape.minibatch,
        num_ppo_epochs=shape.epochs,
        local_rollout_forward_batch_size=shape.rows,
        response_length=shape.new_tokens,
        stop_token="eos",
        temperature=1.0,
        kl_coef=KL_COEF,
        kl_estimator="k1",
        cliprange=CLIP_EPS,
        num_sample_generations=0,
        **TRL_OPTIMIZER,
        **TRL_CPU_FP32_QUIET,
    )
    clock = IterationClock(1)
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=AutoModelForCausalLM.from_pretrained(policy),
        ref_model=AutoModelForCausalLM.from_pretrained(policy),
        reward_model=AutoModelForSequenceClassification.from_pretrained(reward),
        value_model=AutoModelForSequenceClassification.from_pretrained(reward),
        train_dataset=datasets.Dataset.from_dict({"input_ids": tokenizer(rows)["input_ids"]}),
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)
    ppo_trainer.batch_generation = clock.timed(ppo_trainer.batch_generation, "rollout")
    for name in ("forward", "get_reward"):  # reference / value / reward forwards, not the update
        function = getattr(ppo_trainer, name)
        setattr(
            ppo_trainer,
            name,
            clock.timed(function, "forwards", lambda: not torch.is_grad_enabled()),
        )
    trainer.train()
    assert len(clock.ends) == iterations
    return clock.result(shape.warmup, ("rollout", "forwards"))


PEERS = {"ppo": bench_trl_ppo, "grpo": bench_trl_grpo}


def report(name: str, result: Result) -> None:
    print(
        f"{name:<12} {result.seconds:7.3f} s/iteration (best {result.best:.3f})   "
        f"rollout share {result.rollout_share:6.1%}"
        f"   rollout+scoring+forwards {result.prepare_share:6.1%}   (load {result.load:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed iterations")
    parser.add_argument(
        "--no-share", action="store_true", help="jalign with rl.share_prompt_forward=False"
    )
    parser.add_argument(PEER_FLAG, help=argparse.SUPPRESS)  # child process: TRL's side only
    args = parser.parse_args()
    shape = Shape(16, 4, 32, 2, 12, 16, warmup=2, timed=4 if args.quick else 10)
    quiet_peer_libraries()
    if args.peer:
        request = json.loads(args.peer)
        result = PEERS[request["trainer"]](
            Shape(**request["shape"]),
            Path(request["policy"]),
            Path(request["reward"]),
            request["prompts"],
            request["out"],
        )
        report_peer(dataclasses.asdict(result))
        return
    if not PPO_PEER_PACKAGES.is_dir():
        raise SystemExit(f"{PPO_PEER_PACKAGES} is missing: run `bash tools/setup.sh --bench`")
    prepare_command_process()  # TRL runs in child processes without the huge-page restart
    print(
        f"{os.cpu_count()} CPUs, GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}, "
        f"load average {os.getloadavg()[0]:.2f} (other processes skew "
        f"every number here); {shape.prompts} prompts x {shape.n} completions, "
        f"{shape.new_tokens} new tokens, {shape.epochs} epochs x {shape.rows // shape.minibatch} "
        f"minibatches of {shape.minibatch} rows; median of {shape.timed} iterations after "
        f"{shape.warmup} warmup; jalign rl.share_prompt_forward={not args.no_share}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policy, reward = build_models(root)
        rng = np.random.default_rng(0)
        prompts = sample_prompts(shape.prompts * (shape.warmup + shape.timed), rng)
        data = root / "prompts.jsonl"
        data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
        results = {}
        for command in ("grpo", "ppo"):
            cfg = jalign_config(command, shape, policy, reward, data, root / command)
            cfg.rl.share_prompt_forward = not args.no_share
            results[f"jalign {command.upper()}"] = bench_jalign(cfg, shape)
        for command in ("grpo", "ppo"):
            request = {
                "trainer": command,
                "shape": dataclasses.asdict(shape),
                "policy": str(policy),
                "reward": str(reward),
                "prompts": prompts,
                "out": str(root / f"trl_{command}"),
            }
            packages = PPO_PEER_PACKAGES if command == "ppo" else None
            results[f"TRL {command.upper()}"] = Result(**measure_peer(__file__, request, packages))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    for name, result in results.items():
        report(name, result)
    for command in ("GRPO", "PPO"):
        trl, ours = results[f"TRL {command}"], results[f"jalign {command}"]
        print(
            f"ratio TRL {command} / jalign {command}: {trl.seconds / ours.seconds:.2f}x median, "
            f"{trl.best / ours.best:.2f}x best"
        )


if __name__ == "__main__":
    main()

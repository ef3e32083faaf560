"""Training throughput: jalign's compiled train step vs TRL's trainers (PyTorch), same weights,
batch, lengths and optimizer, fp32, measured in one run. Two trainers (`--trainer`, both by
default):

- sft: jalign's SFT objective vs TRL's `SFTTrainer` (`completion_only_loss=True` with a
  `completion_mask` column), on token rows with two losses: full-sequence (prompt 1: every token
  but the first is a target) and completion-only after a 64-token prompt (TRL's default for
  prompt-completion data);
- dpo: jalign's DPO objective (`jalign.train.objectives.preference`, sigmoid loss, beta 0.1,
  live reference = a frozen copy of the initial params in the train state; the batches carry
  the `target_columns` jalign's collator adds, so its LM head runs on the completions only,
  and each pair's prompt runs through the policy and the reference once: `dpo.share_prompt`,
  the default) vs TRL's `DPOTrainer` (sigmoid loss, beta 0.1, reference model = a copy of the
  initial policy run each step, no precomputed reference log-probs, no padding-free), on pairs
  of rows that share a prompt and differ in their completion (every completion token is a
  target).

    python tools/bench_train.py [--quick] [--trainer sft dpo] [--rounds R]

For each model and trainer it prints training throughput for both (rows or pairs per second,
and policy tokens per second) and their ratio, then the achieved FLOP/s as a fraction of this
machine's fp32 matmul peak, measured in the same run with `bench_generate.measure_matmul_peak`.

Both sides train on the same random token ids (no padding, no packing), with AdamW (betas 0.9 /
0.999, eps 1e-8, no weight decay) at a constant learning rate and gradient clipping at global
norm 1.0. Before training, one metric of the first batch is computed by both as a check that
they see the same weights, tokens and targets (SFT: the loss; DPO: logps/chosen, the summed
completion log-prob of the chosen rows, averaged over pairs).

What is timed: the median over the timed steps of the wall-clock time of one optimizer step,
after a few untimed warmup steps (compilation included), in R rounds that alternate the sides
(jalign, then TRL, R times; 3 by default, 2 with --quick): this machine's speed drifts 10-40%
over minutes, and one measurement of each side taken at different moments let that drift set
the ratio (the same full-sequence run read 1.52x and 2.01x). Each side's number is its median
over rounds; the ratio is the median of the per-round ratios, printed with every round's.
- jalign: the jitted `make_train_step` (the objective's loss: forward (policy and, for DPO, the
  reference), backward, clip, AdamW, metrics) called on a host numpy batch, ending with
  `block_until_ready` on the loss; the time between consecutive step ends.
- TRL: `SFTTrainer.train()` / `DPOTrainer.train()` with logging, saving, evaluation and
  activation checkpointing off; the time between consecutive `on_step_end` callbacks, i.e. its
  whole step: collating the batch, forward (TRL's fused LM-head log-probs, plus its metrics;
  for DPO the reference model's no-grad forward too), backward, clip, AdamW (transformers'
  default, the fused torch kernel), zero_grad and its bookkeeping.

Environment: jalign runs in this process, restarted with glibc's huge-page malloc tunable as the
`jalign` command does; TRL runs in a child process without it (`peer_process`), since the
tunable slowed its steps here. Each side is measured the way its users run it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import datasets
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
from bench_generate import demo_size_folder, measure_matmul_peak
from peer_process import (
    PEER_FLAG,
    measure_peer,
    quiet_peer_libraries,
    report_peer,
)
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PrinterCallback,
    Trainer,
    TrainerCallback,
)
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from jalign.data.batching import target_columns
from jalign.data.schemas import TARGET_COLUMNS
from jalign.interop import load_hf_model, smollm2_hf_folder
from jalign.models import ModelConfig
from jalign.runtime import prepare_command_process
from jalign.train.objective import Objective, RunContext
from jalign.train.objectives.preference import PREFERENCE_OBJECTIVE
from jalign.train.objectives.sft import SFT_OBJECTIVE
from jalign.train.optimizer import OptimizerConfig, make_optimizer
from jalign.train.state import compile_step, init_train_state, make_train_step

LEARNING_RATE = 1e-5
MAX_GRAD_NORM = 1.0
# TRL config options every benchmark shares: fp32 on the CPU, seed 0, and no logging, saving,
# evaluation, progress bar or dataloader workers inside the timed steps.
TRL_CPU_FP32_QUIET = dict(
    bf16=False,
    fp16=False,
    logging_strategy="no",
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    disable_tqdm=True,
    use_cpu=True,
    dataloader_num_workers=0,
    seed=0,
)
DPO_BETA = 0.1


@dataclass(frozen=True)
class TrainerKind:
    """What differs between the benchmarked trainers; everything else is one code path.

    objective / settings: jalign's objective and the overrides of its config defaults.
    unit: one batch element (a row, or a pair of rows). prefixes: jalign's batch key prefix of
    each row of an element. reference: whether a frozen reference model runs forward each step.
    check: the jalign metric compared on the first batch; `check_of` computes it from the
    per-token target log-probs [elements, targets] of each element's first row.
    """

    objective: Objective
    settings: dict
    unit: str
    prefixes: tuple[str, ...]
    reference: bool
    check: str
    check_of: Callable[[torch.Tensor], torch.Tensor]


TRAINERS = {
    "sft": TrainerKind(SFT_OBJECTIVE, {}, "row", ("",), False, "loss", lambda t: -t.mean()),
    "dpo": TrainerKind(
        PREFERENCE_OBJECTIVE,
        {"loss_type": "sigmoid", "beta": DPO_BETA, "reference": "live"},
        "pair",
        ("chosen_", "rejected_"),
        True,
        "logps/chosen",
        lambda t: t.sum(1).mean(),
    ),
}


@dataclass(frozen=True)
class Run:
    """batch: elements (rows or pairs) per step; seq: tokens per row; prompt: tokens at the
    start of each row that are not targets (shared by the rows of a pair)."""

    name: str
    folder: str
    trainer: str
    batch: int
    seq: int
    prompt: int
    warmup: int
    timed: int

    @property
    def kind(self) -> TrainerKind:
        return TRAINERS[self.trainer]

    @property
    def tokens(self) -> int:
        """Tokens the policy trains on per step."""
        return self.batch * len(self.kind.prefixes) * self.seq


def random_ids(vocab_size: int, run: Run) -> np.ndarray:
    """int32 [(warmup + timed) * batch, rows per element, seq] token ids, the same for both sides;
    the rows of an element share their prompt."""
    rng = np.random.default_rng(0)
    elements = (run.warmup + run.timed) * run.batch
    ids = rng.integers(10, vocab_size, size=(elements, len(run.kind.prefixes), run.seq))
    ids = ids.astype(np.int32)
    ids[:, 1:, : run.prompt] = ids[:, :1, : run.prompt]
    return ids


def jalign_batch(ids: np.ndarray, run: Run) -> dict[str, np.ndarray]:
    """Unpadded rows of one segment each, keyed by the objective's row prefixes."""
    b, _, t = ids.shape
    loss_mask = np.ones((b, t), np.float32)
    loss_mask[:, : run.prompt] = 0.0
    batch = {"example_mask": np.ones((b,), np.float32)}
    for r, prefix in enumerate(run.kind.prefixes):
        batch |= {
            f"{prefix}input_ids": np.ascontiguousarray(ids[:, r]),
            f"{prefix}positions": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)).copy(),
            f"{prefix}segment_ids": np.ones((b, t), np.int32),
            f"{prefix}loss_mask": loss_mask,
        }
    # As jalign's collator does: the columns whose logits the loss reads.
    columns = target_columns([loss_mask] * len(run.kind.prefixes))
    batch |= {f"{p}{TARGET_COLUMNS}": c for p, c in zip(run.kind.prefixes, columns, strict=True)}
    return batch


def median_step(ends: list[float], run: Run) -> float:
    """Median seconds between consecutive step ends after the warmup steps (the median, not the
    mean, so a burst of load from other processes during one step does not skew it)."""
    return float(np.median(np.diff(ends[run.warmup - 1 :])))


def prepare_jalign(run: Run) -> tuple[Callable[[], tuple[float, float]], ModelConfig, int]:
    """(measure, model config, parameter count): the step is compiled once; each `measure()`
    trains from the initial params and returns (seconds per timed step, first-batch check
    metric)."""
    cfg, graphdef, params = load_hf_model(run.folder)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    steps = run.warmup + run.timed
    opt_cfg = OptimizerConfig(
        lr=LEARNING_RATE,
        schedule="constant",
        total_steps=steps,
        weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM,
    )
    optimizer = make_optimizer(opt_cfg)
    objective = run.kind.objective
    section = {**objective.defaults, **run.kind.settings}
    ctx = RunContext(
        config=ml_collections.ConfigDict({objective.name: section}),
        graphdef=graphdef,
        model_config=cfg,
        mesh=None,
        tokenizer=None,
    )
    frozen = objective.make_frozen(ctx, params) if objective.make_frozen else None
    step = compile_step(make_train_step(objective.make_loss(ctx), optimizer))
    ids = random_ids(cfg.vocab_size, run)
    batches = [jalign_batch(ids[i * run.batch : (i + 1) * run.batch], run) for i in range(steps)]

    def measure() -> tuple[float, float]:
        fresh, fresh_frozen = jax.tree.map(jnp.copy, (params, frozen))  # the step donates them
        state = init_train_state(fresh, optimizer, seed=0, frozen=fresh_frozen)
        ends, check = [], 0.0
        for i, batch in enumerate(batches):
            state, metrics = step(state, batch)
            jax.block_until_ready(metrics["loss"])
            ends.append(time.perf_counter())
            if i == 0:
                check = float(metrics[run.kind.check])
        return median_step(ends, run), check

    return measure, cfg, n_params


class StepClock(TrainerCallback):
    """Records the wall-clock time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def transformers_check(model: torch.nn.Module, ids: np.ndarray, run: Run) -> float:
    """The first batch's check metric from the untrained transformers model."""
    rows = torch.from_numpy(ids[: run.batch, 0]).long()
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=rows).logits[:, :-1], dim=-1)
    targets = logps.gather(-1, rows[:, 1:, None])[..., 0][:, run.prompt - 1 :]
    return float(run.kind.check_of(targets))


def completion_mask(run: Run) -> list[list[int]]:
    """TRL's `completion_mask` column: 0 on each row's first `run.prompt` tokens."""
    rows = (run.warmup + run.timed) * run.batch
    return [[0] * run.prompt + [1] * (run.seq - run.prompt)] * rows


def trl_trainer(
    run: Run, model: torch.nn.Module, ids: np.ndarray, out: str, tokenizer_folder: str
) -> Trainer:
    """TRL's trainer for `run`, on the token ids as its collator takes them."""
    common = dict(
        output_dir=out,
        max_steps=run.warmup + run.timed,
        per_device_train_batch_size=run.batch,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        max_grad_norm=MAX_GRAD_NORM,
        activation_checkpointing=False,
        max_length=run.seq,
        **TRL_CPU_FP32_QUIET,
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    if run.trainer == "sft":
        return SFTTrainer(
            model=model,
            args=SFTConfig(**common, packing=False, completion_only_loss=True),
            train_dataset=datasets.Dataset.from_dict(
                {"input_ids": ids[:, 0].tolist(), "completion_mask": completion_mask(run)}
            ),
            processing_class=tokenizer,
        )
    args = DPOConfig(
        **common,
        padding_free=False,
        precompute_ref_log_probs=False,
        loss_type=["sigmoid"],
        beta=DPO_BETA,
    )
    # DPOTrainer tokenizes text records when it is built; its collator reads token ids
    # (prompt_ids, chosen_ids, rejected_ids), so the random ids go in after construction.
    text = {"prompt": ["a"], "chosen": [" b"], "rejected": [" c"]}
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=datasets.Dataset.from_dict(text),
        processing_class=tokenizer,
    )
    p = run.prompt
    trainer.train_dataset = datasets.Dataset.from_dict(
        {
            "prompt_ids": ids[:, 0, :p].tolist(),
            "chosen_ids": ids[:, 0, p:].tolist(),
            "rejected_ids": ids[:, 1, p:].tolist(),
        }
    )
    return trainer


def bench_trl(run: Run, vocab_size: int, tokenizer_folder: str) -> tuple[float, float]:
    """(seconds per timed step, first-batch check metric before training)."""
    model = AutoModelForCausalLM.from_pretrained(run.folder, dtype=torch.float32)
    ids = random_ids(vocab_size, run)
    check = transformers_check(model, ids, run)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        trainer = trl_trainer(run, model, ids, out, tokenizer_folder)
        trainer.add_callback(clock)
        trainer.remove_callback(PrinterCallback)  # its end-of-training summary line
        trainer.train()
    return median_step(clock.ends, run), check


def step_flops(cfg: ModelConfig, n_params: int, run: Run) -> float:
    """Training FLOPs one step needs over the policy's N rows of T tokens: per forward pass,
    2 * (params - V * D) * tokens for the matmuls below the head, counting a prompt that the
    rows of an element share once (both models tie their embeddings, so the V x D table is
    counted once, as the head), 2 * V * D per position whose logits a loss reads (every
    position for SFT, the completion positions for DPO), and the attention scores and weighted
    sum, 4 * L * N * T^2 * H * hd (the full T x T square); the policy's forward + backward are
    3 forwards, a reference adds one. TRL runs the shared prompt once per row: its steps do
    more work than this count, which measures the work the step's result needs."""
    passes = 3 + int(run.kind.reference)
    rows = run.batch * len(run.kind.prefixes)
    head = cfg.vocab_size * cfg.hidden_size
    head_positions = rows * (run.seq - run.prompt)
    tokens = run.batch * run.prompt + head_positions
    attention = 4 * cfg.num_layers * rows * run.seq**2 * cfg.num_heads * cfg.head_dim
    return passes * (2 * (n_params - head) * tokens + 2 * head * head_positions + attention)


def bench(run: Run, peak: float, tokenizer_folder: str, rounds: int) -> None:
    """Measure both sides in `rounds` alternated rounds (jalign, then TRL) and print each side's
    median step, every round's ratio and their median."""
    measure, cfg, n_params = prepare_jalign(run)
    request = {"run": dataclasses.asdict(run), "vocab": cfg.vocab_size, "tok": tokenizer_folder}
    times: dict[str, list[float]] = {"jalign": [], "TRL": []}
    for _ in range(rounds):
        seconds, check_jalign = measure()
        times["jalign"].append(seconds)
        seconds, check_trl = measure_peer(__file__, request)["result"]
        times["TRL"].append(seconds)
    unit = run.kind.unit
    print(
        f"\n== {run.trainer.upper()} {run.name} ({n_params / 1e6:.1f}M params): batch {run.batch} "
        f"{unit}s, seq {run.seq} (prompt {run.prompt}), fp32, {run.warmup} warmup + {run.timed} "
        f"timed steps (median step) x {rounds} alternated rounds, load average now "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(f"first-batch {run.kind.check}: jalign {check_jalign:.4f}, transformers {check_trl:.4f}")
    median = {name: float(np.median(t)) for name, t in times.items()}
    for name, seconds in median.items():
        per_round = ", ".join(f"{t * 1e3:.1f}" for t in times[name])
        print(
            f"{name:6s} {run.batch / seconds:8.2f} {unit}s/s  {run.tokens / seconds:10.1f} tok/s  "
            f"({seconds * 1e3:.1f} ms/step; rounds: {per_round})"
        )
    ratios = [trl / own for own, trl in zip(times["jalign"], times["TRL"], strict=True)]
    per_round = ", ".join(f"{r:.2f}x" for r in ratios)
    print(f"ratio (jalign / TRL): {np.median(ratios):.2f}x (median of rounds: {per_round})")
    flops = step_flops(cfg, n_params, run)
    for name, seconds in median.items():
        print(
            f"{name} achieved {flops / seconds / 1e9:.1f} GFLOP/s "
            f"({flops / 1e9:.1f} GFLOP/step) = {flops / seconds / peak:.0%} of matmul peak"
        )


def runs(trainer: str, quick: bool, demo_folder: str, smollm_folder: str) -> list[Run]:
    """Rows of 128 tokens on the demo-size model, and on SmolLM2-135M unless quick. SFT: a
    full-sequence loss (prompt 1), then a completion-only loss after a 64-token prompt; DPO: pairs
    of a 64-token prompt and two 64-token completions."""
    prompts = (1, 64) if trainer == "sft" else (64,)
    out = [
        Run("demo-size llama", demo_folder, trainer, 8, 128, p, 3, 4 if quick else 20)
        for p in prompts
    ]
    if not quick:
        out += [Run("SmolLM2-135M", smollm_folder, trainer, 4, 128, p, 2, 6) for p in prompts]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, demo-size model only")
    parser.add_argument(
        "--trainer",
        nargs="+",
        choices=tuple(TRAINERS),
        default=list(TRAINERS),
        help="trainers to benchmark (default: all)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternated rounds per run, jalign then TRL (default: 3, --quick: 2)",
    )
    parser.add_argument(PEER_FLAG, help=argparse.SUPPRESS)  # child process: TRL's side only
    args = parser.parse_args()
    quiet_peer_libraries()
    if args.peer:
        request = json.loads(args.peer)
        run = Run(**request["run"])
        report_peer({"result": bench_trl(run, request["vocab"], request["tok"])})
        return
    prepare_command_process()  # TRL runs in a child process without the huge-page restart
    rounds = args.rounds or (2 if args.quick else 3)
    peak = measure_matmul_peak()
    print(
        f"machine: {peak / 1e9:.1f} GFLOP/s fp32 matmul, {os.cpu_count()} CPUs, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}, "
        f"load average {os.getloadavg()[0]:.2f} (other processes skew every number here)"
    )
    tokenizer_folder = str(smollm2_hf_folder())
    with tempfile.TemporaryDirectory() as root:
        demo_folder = demo_size_folder(root)
        for trainer in args.trainer:
            for run in runs(trainer, args.quick, demo_folder, tokenizer_folder):
                bench(run, peak, tokenizer_folder, rounds)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

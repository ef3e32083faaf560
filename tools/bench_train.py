"""SFT training throughput: jalign's compiled train step vs TRL's `SFTTrainer` (PyTorch), same
weights, batch size, sequence length and optimizer, fp32, measured in one run.

    python tools/bench_train.py [--quick]

For each model it prints training tokens/s for both and their ratio, then jalign's achieved
FLOP/s (6 * params * tokens/s plus attention) as a fraction of this machine's fp32 matmul peak,
measured in the same run with `bench_generate.measure_matmul_peak`.

Both sides train on the same random token rows (no padding, no packing) with a full-sequence
next-token loss (every token but the first is a target), AdamW (betas 0.9 / 0.999, eps 1e-8,
no weight decay) at a constant learning rate, and gradient clipping at global norm 1.0.

What is timed: the median over the timed steps of the wall-clock time of one optimizer step,
after a few untimed warmup steps (compilation included):
- jalign: the jitted `make_train_step` (SFT objective loss from `jalign.train.objectives.sft`:
  forward, backward, clip, AdamW, metrics) called on a host numpy batch, ending with
  `block_until_ready` on the loss; the time between consecutive step ends.
- TRL: `SFTTrainer.train()` with logging, saving, evaluation and gradient checkpointing off; the
  time between consecutive `on_step_end` callbacks, i.e. its whole step: collating the batch,
  forward (TRL's fused LM-head loss, plus its entropy / accuracy metrics), backward, clip,
  AdamW (transformers' default, the fused torch kernel), zero_grad and its bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import datasets
import jax
import ml_collections
import numpy as np
import torch
import transformers
from bench_generate import demo_size_folder, measure_matmul_peak
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from jalign.interop import load_hf_model, smollm2_hf_folder
from jalign.models import ModelConfig
from jalign.train.objective import RunContext
from jalign.train.objectives.sft import SFT_OBJECTIVE
from jalign.train.optimizer import OptimizerConfig, make_optimizer
from jalign.train.state import compile_step, init_train_state, make_train_step

LEARNING_RATE = 1e-5
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class Run:
    name: str
    folder: str
    batch: int
    seq: int
    warmup: int
    timed: int


def random_rows(vocab_size: int, run: Run) -> np.ndarray:
    """int32 [(warmup + timed) * batch, seq] token ids, the same for both sides."""
    rng = np.random.default_rng(0)
    rows = (run.warmup + run.timed) * run.batch
    return rng.integers(10, vocab_size, size=(rows, run.seq), dtype=np.int32)


def jalign_batch(ids: np.ndarray) -> dict[str, np.ndarray]:
    """Unpadded rows of one segment each; every token but the first is a target."""
    b, t = ids.shape
    loss_mask = np.ones((b, t), np.float32)
    loss_mask[:, 0] = 0.0
    return {
        "input_ids": ids,
        "positions": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)).copy(),
        "segment_ids": np.ones((b, t), np.int32),
        "loss_mask": loss_mask,
        "example_mask": np.ones((b,), np.float32),
    }


def median_step(ends: list[float], run: Run) -> float:
    """Median seconds between consecutive step ends after the warmup steps (the median, not the
    mean, so a burst of load from other processes during one step does not skew it)."""
    return float(np.median(np.diff(ends[run.warmup - 1 :])))


def bench_jalign(run: Run) -> tuple[float, float, ModelConfig, int]:
    """(seconds per timed step, first-step loss, model config, parameter count)."""
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
    ctx = RunContext(
        config=ml_collections.ConfigDict({"sft": dict(SFT_OBJECTIVE.defaults)}),
        graphdef=graphdef,
        model_config=cfg,
        mesh=None,
        tokenizer=None,
    )
    step = compile_step(make_train_step(SFT_OBJECTIVE.make_loss(ctx), optimizer))
    state = init_train_state(params, optimizer, seed=0)
    rows = random_rows(cfg.vocab_size, run)
    batches = [jalign_batch(rows[i * run.batch : (i + 1) * run.batch]) for i in range(steps)]

    ends, first_loss = [], 0.0
    for i, batch in enumerate(batches):
        state, metrics = step(state, batch)
        loss = jax.block_until_ready(metrics["loss"])
        ends.append(time.perf_counter())
        if i == 0:
            first_loss = float(loss)
    return median_step(ends, run), first_loss, cfg, n_params


class StepClock(TrainerCallback):
    """Records the wall-clock time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def bench_trl(run: Run, vocab_size: int, tokenizer_folder: str) -> tuple[float, float]:
    """(seconds per timed step, loss of the first batch before training)."""
    model = AutoModelForCausalLM.from_pretrained(run.folder, dtype=torch.float32)
    rows = random_rows(vocab_size, run)
    with torch.no_grad():
        first = torch.from_numpy(rows[: run.batch]).long()
        first_loss = float(model(input_ids=first, labels=first).loss)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
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
            bf16=False,
            fp16=False,
            activation_checkpointing=False,
            max_length=run.seq,
            packing=False,
            completion_only_loss=False,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_dict({"input_ids": rows.tolist()}),
            processing_class=AutoTokenizer.from_pretrained(tokenizer_folder),
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # its end-of-training summary line
        trainer.train()
    return median_step(clock.ends, run), first_loss


def step_flops(cfg: ModelConfig, n_params: int, batch: int, seq: int) -> float:
    """Training FLOPs of one step: 6 * params * tokens (matmuls, forward + backward), plus the
    attention scores and weighted sum, 3 * 4 * L * B * T^2 * H * hd (the full T x T square,
    as jalign computes it)."""
    tokens = batch * seq
    attention = 12 * cfg.num_layers * batch * seq**2 * cfg.num_heads * cfg.head_dim
    return 6 * n_params * tokens + attention


def bench(run: Run, peak: float, tokenizer_folder: str) -> None:
    t_jalign, loss_jalign, cfg, n_params = bench_jalign(run)
    t_trl, loss_trl = bench_trl(run, cfg.vocab_size, tokenizer_folder)
    tokens = run.batch * run.seq
    print(
        f"\n== {run.name} ({n_params / 1e6:.1f}M params): batch {run.batch}, seq {run.seq}, "
        f"fp32, {run.warmup} warmup + {run.timed} timed steps (median step), "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    print(f"first-batch loss: jalign {loss_jalign:.4f}, transformers {loss_trl:.4f}")
    print(f"jalign  {tokens / t_jalign:10.1f} tok/s  ({t_jalign * 1e3:.1f} ms/step)")
    print(f"TRL     {tokens / t_trl:10.1f} tok/s  ({t_trl * 1e3:.1f} ms/step)")
    print(f"ratio (jalign / TRL): {t_trl / t_jalign:.2f}x")
    flops = step_flops(cfg, n_params, run.batch, run.seq)
    for name, seconds in (("jalign", t_jalign), ("TRL", t_trl)):
        print(
            f"{name} achieved {flops / seconds / 1e9:.1f} GFLOP/s "
            f"({flops / 1e9:.1f} GFLOP/step) = {flops / seconds / peak:.0%} of matmul peak"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, demo-size model only")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    peak = measure_matmul_peak()
    print(
        f"machine: {peak / 1e9:.1f} GFLOP/s fp32 matmul, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} (other processes skew every number here)"
    )
    tokenizer_folder = str(smollm2_hf_folder())
    with tempfile.TemporaryDirectory() as root:
        runs = [Run("demo-size llama", demo_size_folder(root), 8, 128, 3, 4 if args.quick else 20)]
        if not args.quick:
            runs.append(Run("SmolLM2-135M", tokenizer_folder, 4, 128, 2, 6))
        for run in runs:
            bench(run, peak, tokenizer_folder)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Training data made between steps from the current policy: semi-online DPO (Tang et al. 2024,
"Understanding the performance gap between online and offline alignment algorithms";
Lanchantin et al. 2025, "Bridging Offline and Online Reinforcement Learning for LLMs") and
rejection-sampling fine-tuning (RAFT, Dong et al. 2023; ReST, Gulcehre et al. 2023).

Round r starts before step r N + 1 (N = the section's `every`): `prompts_per_round` prompts (the
next ones of a seeded shuffle of `prompts`, cycling) are sampled `samples` times each from the
current policy params (used in place, not copied), with the rng fold_in(key(seed), r); the
samples are scored by the reward source (`reward_fn` or `reward_model`, the latter reading the
sampled token ids) and turned into records by the plan's selector (`selection`); training then
reads only that round's records until the next round. A plan may also refresh the reference
model (a copy of the current policy) at each round after the first.

Resume is exact: round r's records are written to `run_dir/rounds/round-XXXX.jsonl`, then its
summary `round-XXXX.json` (the commit marker; both atomically), and a round whose summary exists
is read back rather than sampled again. The data position saved with a checkpoint is (round,
position within its records).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jalign.data import PROMPT, DataPipeline
from jalign.data.encode import TextEncoder
from jalign.data.examples import guarded, validate
from jalign.data.readers import open_records
from jalign.errors import JalignError
from jalign.eval.models import EvalModel, load_eval_model
from jalign.eval.rewards import Scorer, import_callable, reward_model_scorer, text_scorer
from jalign.eval.rollouts import concat_rollouts, sample_rollouts
from jalign.sampling import SamplingParams
from jalign.train.objective import RunContext
from jalign.train.state import TrainState

Selector = Callable[[list[Any], list[str], np.ndarray, int, np.random.Generator], tuple]


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """What a trainer's rounds make. section: its config node (sampling and reward keys);
    key: that node's dotted name, for errors; kind: the data kind of the records; select:
    (prompts, completions, scores, k, rng) -> (records, stats); refresh_reference: copy the
    policy into `frozen["ref_params"]` at each round after the first."""

    section: ml_collections.ConfigDict
    key: str
    kind: str
    select: Selector
    refresh_reference: bool = False


def round_path(run_dir: str | Path, index: int) -> Path:
    """Round `index`'s records file; its summary has the same name with `.json`."""
    return Path(run_dir) / "rounds" / f"round-{index:04d}.jsonl"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_prompts(path: str) -> list[Any]:
    """The prompts (text or message lists) of a prompt file (any format the data layer reads)."""
    return [
        guarded(raw, lambda r: validate(PROMPT, r), "raise").prompt for raw in open_records(path)
    ]


def load_round_scorer(section: ml_collections.ConfigDict, key: str) -> Scorer:
    """The section's `reward_fn` ("module:function") or `reward_model` (a scalar-head folder)."""
    if section.reward_fn:
        return text_scorer(
            import_callable(section.reward_fn, f"{key}.reward_fn: (prompts, completions) -> scores")
        )
    model: EvalModel = load_eval_model(section.reward_model, head="scalar")
    return reward_model_scorer(model)


class Rounds:
    """The `TrainingData` of a run whose records come from the policy every `every` steps."""

    def __init__(self, ctx: RunContext, batch_size: int, plan: RoundPlan):
        from jalign.train.loop import data_config

        self.ctx, self.plan, self.batch_size = ctx, plan, batch_size
        self.section = plan.section
        self.data = data_config(ctx.config)
        self.prompts = read_prompts(self.section.prompts)
        self.order = np.random.default_rng(ctx.config.seed).permutation(len(self.prompts))
        self.scorer = load_round_scorer(self.section, plan.key)
        self.encoder = TextEncoder(ctx.tokenizer, self.data)
        self.index = -1
        self._batches = None
        self.stats = None
        self.name = f"{plan.key} rounds (none yet)"

    def _round_prompts(self, index: int) -> list[Any]:
        n = self.section.prompts_per_round
        picks = (index * n + np.arange(n)) % len(self.prompts)
        return [self.prompts[i] for i in self.order[picks]]

    def _sample_round(self, index: int, params: Any) -> dict[str, float]:
        """Sample, score and select round `index`; write its records, then its summary."""
        section, cfg = self.section, self.ctx.config
        k = section.samples
        sampling = SamplingParams(
            temperature=section.temperature, n=k, max_new_tokens=section.max_new_tokens
        )
        rollouts = concat_rollouts(
            sample_rollouts(
                self.ctx.graphdef,
                params,
                self.ctx.tokenizer,
                self._round_prompts(index),
                sampling,
                section.batch_size,
                rng=jax.random.fold_in(jax.random.key(cfg.seed), index),
                mesh=self.ctx.mesh,
                encode=lambda prompt: self.encoder.prompt(prompt).tolist(),
            )
        )
        scores = self.scorer(rollouts)
        records, stats = self.plan.select(
            rollouts.prompts,
            rollouts.completions,
            scores,
            k,
            np.random.default_rng([cfg.seed, index]),
        )
        if not records:
            raise JalignError(
                f"round {index} of {self.plan.key}: no prompt's samples gave a training record "
                f"(all {k} samples of every prompt were filtered out); allowed: raise "
                f"{self.plan.key}.samples or {self.plan.key}.temperature, or relax the selection"
            )
        path = round_path(cfg.run_dir, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
        summary = {
            "round": index,
            "reward_mean": float(scores.mean()),
            "length_mean": float(rollouts.lengths.mean()),
            **stats,
        }
        _write_atomic(path.with_suffix(".json"), json.dumps(summary) + "\n")
        return summary

    def _open(self, index: int) -> None:
        path = round_path(self.ctx.config.run_dir, index)
        pipeline = DataPipeline(
            path, self.plan.kind, self.ctx.tokenizer, self.data, self.batch_size
        )
        self._batches = pipeline.iterator()
        self.stats = self._batches.stats
        self.index = index
        self.name = str(path)

    def prepare(self, step: int, state: TrainState) -> tuple[TrainState, dict[str, float]]:
        if (step - 1) % self.section.every:
            return state, {}
        index = (step - 1) // self.section.every
        if index > 0 and self.plan.refresh_reference:
            reference = jax.tree.map(jnp.copy, state.params)
            state = dataclasses.replace(state, frozen={**state.frozen, "ref_params": reference})
        summary_path = round_path(self.ctx.config.run_dir, index).with_suffix(".json")
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
        else:
            summary = self._sample_round(index, state.params)
        self._open(index)
        return state, {f"online/{k}": float(v) for k, v in summary.items()}

    def __next__(self) -> dict:
        return next(self._batches)

    def get_state(self) -> dict:
        return {"round": self.index, "position": self._batches.get_state()}

    def set_state(self, state: dict) -> None:
        self._open(state["round"])
        self._batches.set_state(state["position"])

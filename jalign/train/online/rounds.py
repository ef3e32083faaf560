"""Semi-online DPO rounds as the training loop's data (Tang et al. 2024, "Understanding the
performance gap between online and offline alignment algorithms"; Lanchantin et al. 2025,
"Bridging Offline and Online Reinforcement Learning for LLMs").

Round r starts before step r N + 1 (N = `dpo.online.every`): `prompts_per_round` prompts (the
next ones of a seeded shuffle of `dpo.online.prompts`, cycling) are sampled `samples` times
each from the current policy params (used in place, not copied), with the rng
fold_in(key(seed), r); the samples are scored by the reward source and turned into pairs
(`pairs.select_pairs`); training then reads only that round's pairs until the next round.
N = 1 is fully online DPO; offline DPO is `every = 0` (no rounds). With
`dpo.online.reference = "refresh"` the reference becomes a copy of the current policy at each
round after the first.

Resume is exact: round r's pairs are written to `run_dir/rounds/round-XXXX.jsonl`, then its
summary `round-XXXX.json` (the commit marker; both atomically), and a round whose summary
exists is read back rather than sampled again. The data position saved with a checkpoint is
(round, position within its pairs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jalign.data import PREFERENCE, PROMPT, DataPipeline
from jalign.data.examples import guarded, validate
from jalign.data.readers import open_records
from jalign.errors import JalignError
from jalign.eval.rollouts import sample_rollouts
from jalign.sampling import SamplingParams
from jalign.train.objective import RunContext
from jalign.train.online.pairs import select_pairs
from jalign.train.online.rewards import load_reward
from jalign.train.state import TrainState


def round_path(run_dir: str | Path, index: int) -> Path:
    """Round `index`'s pairs file; its summary has the same name with `.json`."""
    return Path(run_dir) / "rounds" / f"round-{index:04d}.jsonl"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_prompts(path: str) -> list[str]:
    """The text prompts of a prompt file (any format the data layer reads)."""
    prompts = []
    for raw in open_records(path):
        example = guarded(raw, lambda r: validate(PROMPT, r), "raise")
        if not isinstance(example.prompt, str):
            raise JalignError(
                f"{raw.where}: a chat-form prompt; semi-online sampling takes text prompts, "
                'allowed: {"prompt": str}'
            )
        prompts.append(example.prompt)
    return prompts


class OnlineData:
    """The `TrainingData` of a semi-online run: a new round of pairs every `every` steps."""

    def __init__(self, ctx: RunContext, batch_size: int):
        from jalign.train.loop import data_config

        cfg = ctx.config
        self.ctx = ctx
        self.online = cfg.dpo.online
        self.batch_size = batch_size
        self.data = data_config(cfg)
        self.prompts = read_prompts(self.online.prompts)
        self.order = np.random.default_rng(cfg.seed).permutation(len(self.prompts))
        self.reward = load_reward(self.online, ctx.tokenizer, self.data)
        self.index = -1
        self._batches = None
        self.stats = None
        self.name = "semi-online rounds (none yet)"

    def _round_prompts(self, index: int) -> list[str]:
        n = self.online.prompts_per_round
        picks = (index * n + np.arange(n)) % len(self.prompts)
        return [self.prompts[i] for i in self.order[picks]]

    def _sample_round(self, index: int, params: Any) -> dict[str, float]:
        """Sample, score and pair round `index`; write its pairs, then its summary."""
        online, cfg = self.online, self.ctx.config
        k = online.samples
        sampling = SamplingParams(
            temperature=online.temperature, n=k, max_new_tokens=online.max_new_tokens
        )
        rollouts = sample_rollouts(
            self.ctx.graphdef,
            params,
            self.ctx.tokenizer,
            self._round_prompts(index),
            sampling,
            online.batch_size,
            rng=jax.random.fold_in(jax.random.key(cfg.seed), index),
            mesh=self.ctx.mesh,
        )
        prompts = [p for r in rollouts for p in r.prompts]
        completions = [c for r in rollouts for c in r.completions]
        scores = np.asarray(self.reward(prompts, completions), np.float64)
        rng = np.random.default_rng([cfg.seed, index])
        records = select_pairs(
            prompts, completions, scores, k, online.pairs, online.min_margin, rng
        )
        path = round_path(cfg.run_dir, index)
        if not records:
            raise JalignError(
                f"semi-online round {index}: no prompt gave a pair (all {k} samples of every "
                f"prompt scored within dpo.online.min_margin={online.min_margin} or were "
                "identical); allowed: raise dpo.online.samples or dpo.online.temperature"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
        summary = {
            "round": index,
            "pairs": len(records),
            "reward_mean": float(scores.mean()),
            "reward_chosen": float(np.mean([r["chosen_score"] for r in records])),
            "reward_rejected": float(np.mean([r["rejected_score"] for r in records])),
            "length_mean": float(np.mean([x.lengths.mean() for x in rollouts])),
        }
        _write_atomic(path.with_suffix(".json"), json.dumps(summary) + "\n")
        return summary

    def _open(self, index: int) -> None:
        path = round_path(self.ctx.config.run_dir, index)
        pipeline = DataPipeline(path, PREFERENCE, self.ctx.tokenizer, self.data, self.batch_size)
        self._batches = pipeline.iterator()
        self.stats = self._batches.stats
        self.index = index
        self.name = str(path)

    def prepare(self, step: int, state: TrainState) -> tuple[TrainState, dict[str, float]]:
        if (step - 1) % self.online.every:
            return state, {}
        index = (step - 1) // self.online.every
        if index > 0 and self.online.reference == "refresh":
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

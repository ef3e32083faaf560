"""The alignment pipeline end to end on the demo task: one command, one table.

    jalign pipeline --config configs/pipeline_demo.py [--config.ppo.rl.kl_coef=0.02 ...]

1. the demo run (`jalign.demo.run`): SFT on imperfect demonstrations, samples of the SFT policy
   ranked by the gold reward with Plackett-Luce noise (Bradley-Terry noise on every pair), a
   reward model trained on the rankings, and the rankings' preference pairs;
2. from the same SFT model, each stage of `stages` (any of "dpo", "semi_online_dpo", "ppo",
   "grpo"): an ordinary jalign trainer run whose config is the pipeline config's section of the
   same name (every key of that trainer is allowed and checked there);
3. an evaluation of every policy on held-out prompts (`jalign.eval.evaluate`): gold reward,
   reward-model score, KL to the SFT model, length, and win rate against SFT judged by the gold
   reward; printed as one table, written as `summary.json`, and training curves as PNG plots.

String values in the stage sections may name the demo run's outputs: "{sft}" (the SFT model
folder), "{rm}" (the reward model folder) and "{data}" (the data folder); the pipeline fills
them in, and sets each stage's `run_dir` under its own. Every stage resumes: running the same
command again skips finished stages and continues an interrupted one from its checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from jalign.config import Schema, load_config, save_config
from jalign.config.keys import iter_leaves
from jalign.demo.run import DemoScale, run_demo
from jalign.errors import JalignError

log = logging.getLogger(__name__)

STAGE_TRAINERS = {"dpo": "dpo", "semi_online_dpo": "dpo", "ppo": "ppo", "grpo": "grpo"}
STAGE_PLOTS = {
    "dpo": ("loss", "rewards/margins", "rewards/accuracies"),
    "semi_online_dpo": ("loss", "rewards/margins", "online/reward_mean"),
    "ppo": ("reward/rm", "reward/gold_reward_fn", "objective/kl"),
    "grpo": ("reward/gold_reward_fn", "reward/rm", "objective/kl"),
}
_DONE = "stage_done.json"


def _trainer_schema(trainer: str) -> Schema:
    if trainer in ("ppo", "grpo"):
        from jalign.rl.schema import rl_schema

        return rl_schema(trainer)
    from jalign.train.trainers import objectives, trainer_schema

    return trainer_schema(objectives()[trainer])


def pipeline_schema() -> Schema:
    """Defaults: run_dir, stages, the demo run's scale, eval options, and one full trainer
    config per stage; each trainer's choices and checks apply under its stage's prefix."""
    defaults = ml_collections.ConfigDict()
    defaults.run_dir = "runs/pipeline"
    defaults.stages = list(STAGE_TRAINERS)
    defaults.demo = ml_collections.ConfigDict(vars(DemoScale()))
    defaults.eval = ml_collections.ConfigDict(
        {"prompts": 200, "temperature": 1.0, "max_new_tokens": 16, "batch_size": 64, "seed": 1}
    )
    choices, checks = {}, {}
    for stage, trainer in STAGE_TRAINERS.items():
        schema = _trainer_schema(trainer)
        defaults[stage] = copy.deepcopy(schema.defaults)
        choices |= {f"{stage}.{k}": v for k, v in schema.choices.items()}
        checks |= {f"{stage}.{k}": v for k, v in schema.checks.items()}
    return Schema(defaults=defaults, choices=choices, checks=checks)


def load_pipeline_config(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    cfg = load_config(path, list(overrides), pipeline_schema())
    unknown = [s for s in cfg.stages if s not in STAGE_TRAINERS]
    if unknown:
        raise JalignError(
            f"config key 'stages' names {unknown}; allowed values: {', '.join(STAGE_TRAINERS)}"
        )
    return cfg


def stage_config(
    cfg: ml_collections.ConfigDict, stage: str, outputs: dict[str, str]
) -> ml_collections.ConfigDict:
    """The stage's trainer config with "{sft}", "{rm}", "{data}" filled in and its run_dir."""
    section = ml_collections.ConfigDict(cfg[stage].to_dict())

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            for name, path in outputs.items():
                value = value.replace("{" + name + "}", path)
            return value
        if isinstance(value, list | tuple):
            return type(value)(fill(v) for v in value)
        return value

    for key, value in iter_leaves(section):
        *parents, name = key.split(".")
        node = section
        for parent in parents:
            node = node[parent]
        node[name] = fill(value)
    section.run_dir = str(Path(cfg.run_dir) / stage)
    return section


def run_stage(stage: str, stage_cfg: ml_collections.ConfigDict) -> Path:
    """Train one stage (resuming if interrupted) and return its exported HF folder."""
    run_dir = Path(stage_cfg.run_dir)
    if (run_dir / _DONE).exists():
        log.info("stage %s already finished in %s", stage, run_dir)
        return run_dir / "hf"
    trainer = STAGE_TRAINERS[stage]
    if trainer in ("ppo", "grpo"):
        from jalign.rl.loop import train_rl
        from jalign.rl.schema import check_sizes

        check_sizes(stage_cfg)
        _, metrics = train_rl(stage_cfg)
    else:
        from jalign.train.loop import train
        from jalign.train.trainers import objectives

        metrics = train(stage_cfg, objectives()[trainer]).metrics
    (run_dir / _DONE).write_text(json.dumps(metrics, default=float) + "\n")
    return run_dir / "hf"


def evaluate_policies(
    cfg: ml_collections.ConfigDict, policies: dict[str, Path], outputs: dict[str, str]
) -> list[dict[str, Any]]:
    """The evaluation table: every policy against the SFT model on held-out prompts."""
    from jalign.data import load_tokenizer
    from jalign.demo.task import gold_reward_fn
    from jalign.eval.compare import score_judge
    from jalign.eval.evaluate import BASELINE, EvalSettings, evaluate
    from jalign.eval.models import load_eval_model
    from jalign.eval.rewards import reward_model_scorer, text_scorer
    from jalign.sampling import SamplingParams

    prompts_file = Path(outputs["data"]) / "prompts_eval.jsonl"
    lines = prompts_file.read_text().splitlines()[: cfg.eval.prompts]
    prompts = [json.loads(line)["prompt"] for line in lines]
    sft = load_eval_model(outputs["sft"])
    gold = text_scorer(gold_reward_fn)
    settings = EvalSettings(
        SamplingParams(
            temperature=cfg.eval.temperature,
            max_new_tokens=cfg.eval.max_new_tokens,
            seed=cfg.eval.seed,
        ),
        batch_size=cfg.eval.batch_size,
    )
    rows = evaluate(
        {name: load_eval_model(str(path)) for name, path in policies.items()},
        load_tokenizer(outputs["sft"]),
        prompts,
        settings,
        rewards={
            "gold": gold,
            "rm": reward_model_scorer(load_eval_model(outputs["rm"], head="scalar")),
        },
        reference=sft,
        baseline=sft,
        judge=score_judge(gold),
    )
    return [row | {"policy": "sft"} if row["policy"] == BASELINE else row for row in rows]


def plot_stages(cfg: ml_collections.ConfigDict) -> list[Path]:
    """One PNG of training curves per finished stage (the `STAGE_PLOTS` metrics it logged)."""
    from jalign.metrics import plot_curves, read_metrics

    plots = []
    for stage in cfg.stages:
        path = Path(cfg.run_dir) / stage / "metrics.jsonl"
        records = read_metrics(path) if path.exists() else []
        keys = [k for k in STAGE_PLOTS[stage] if any(k in r for r in records)]
        if keys:
            out = Path(cfg.run_dir) / "plots" / f"{stage}.png"
            plots.append(plot_curves({stage: records}, keys, out))
    return plots


def run_pipeline(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """Run every stage and the evaluation; returns (and writes) the summary."""
    root = Path(cfg.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, root)
    demo = run_demo(root / "demo", DemoScale(**cfg.demo.to_dict()))
    outputs = {
        "sft": str(root / "demo" / "sft" / "hf"),
        "rm": str(root / "demo" / "rm" / "hf"),
        "data": str(root / "demo" / "data"),
    }
    policies = {}
    for stage in cfg.stages:
        policies[stage] = run_stage(stage, stage_config(cfg, stage, outputs))
    rows = evaluate_policies(cfg, policies, outputs)
    summary = {
        "table": rows,
        "rm_gold_accuracy": demo["rm_gold_accuracy"],
        "plots": [str(p) for p in plot_stages(cfg)],
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary

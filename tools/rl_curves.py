"""RL curves on the demo task: gold reward, reward-model reward and KL vs. iteration for

    ppo        PPO on the demo reward model (configs/ppo_demo.py)
    grpo       GRPO on the gold verifier (configs/grpo_demo.py)
    ppo_lowkl  PPO on the demo reward model with no KL penalty and a 3x learning rate (reward
               over-optimisation, Gao et al. 2023: RM reward may rise while gold falls)

Every run logs both rewards on its own rollouts (the one it does not train on is a monitor,
`rl.monitor_rewards`), at the sampling temperature. Writes <out>/<run>/metrics.jsonl,
<out>/curves.png, <out>/summary.jsonl and prints a table.

    python -m jalign.demo.run --out runs/demo       # the SFT model, RM and prompts
    python tools/rl_curves.py --demo runs/demo --out runs/demo/rl_curves [--steps 60]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jalign.metrics import plot_curves
from jalign.metrics.records import read_metrics
from jalign.rl import load_rl_config, train_rl

GOLD_FN = "jalign.demo.task:gold_reward_fn"
GOLD = "reward/gold_reward_fn"
RM = "reward/rm"
KL = "objective/kl"
REPO = Path(__file__).resolve().parent.parent

RUNS = {
    "ppo": ("ppo", "configs/ppo_demo.py", []),
    "grpo": ("grpo", "configs/grpo_demo.py", []),
    "ppo_lowkl": (
        "ppo",
        "configs/ppo_demo.py",
        ["--config.rl.kl_coef=0.0", "--config.optimizer.lr=3e-4"],
    ),
}


def _overrides(demo: Path, run_dir: Path, steps: int, extra: list[str]) -> list[str]:
    return [
        f"--config.run_dir={run_dir}",
        f"--config.model.path={demo / 'sft' / 'hf'}",
        f"--config.data.train={demo / 'data' / 'prompts_train.jsonl'}",
        f"--config.train.total_steps={steps}",
        f"--config.train.save_every={steps}",
        "--config.train.export_hf=False",
        *extra,
    ]


def _summary(name: str, records: list[dict], window: int) -> dict:
    first, last = records[:window], records[-window:]
    mean = lambda rs, k: float(np.mean([r[k] for r in rs]))  # noqa: E731
    return {
        "run": name,
        "gold_first": mean(first, GOLD),
        "gold_last": mean(last, GOLD),
        "rm_first": mean(first, RM),
        "rm_last": mean(last, RM),
        "kl_last": mean(last, KL),
        "length_last": mean(last, "response/length_mean"),
        "s_per_iter": float(np.median([r["time/iteration"] for r in records[1:]])),
        "rollout_share": float(np.median([r["time/rollout_share"] for r in records[1:]])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", default="runs/demo", help="output folder of jalign.demo.run")
    parser.add_argument("--out", default="runs/demo/rl_curves")
    parser.add_argument("--steps", type=int, default=60, help="RL iterations per run")
    parser.add_argument("--window", type=int, default=5, help="iterations averaged in the table")
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="RUN:--config.KEY=VALUE",
        help="an extra config override for one run, e.g. ppo_lowkl:--config.rl.kl_coef=0",
    )
    args = parser.parse_args()
    demo, out = Path(args.demo).resolve(), Path(args.out).resolve()
    summaries = []
    for name in args.runs:
        command, config, extra = RUNS[name]
        mine = [o.partition(":")[2] for o in args.set if o.partition(":")[0] == name]
        overrides = _overrides(demo, out / name, args.steps, [*extra, *mine])
        if "ppo" in name:
            overrides.append(f"--config.rl.rewards=['model:{demo / 'rm' / 'hf'}']")
            overrides.append(f"--config.rl.monitor_rewards=['function:{GOLD_FN}']")
        else:
            overrides.append(f"--config.rl.monitor_rewards=['model:{demo / 'rm' / 'hf'}']")
        train_rl(load_rl_config(command, str(REPO / config), overrides))
        summaries.append(_summary(name, read_metrics(out / name / "metrics.jsonl"), args.window))
    runs = {name: out / name / "metrics.jsonl" for name in args.runs}
    png = plot_curves(runs, [GOLD, RM, KL], out / "curves.png")
    with (out / "summary.jsonl").open("w") as f:
        for row in summaries:
            f.write(json.dumps(row) + "\n")
    header = f"{'run':<10} {'gold':>13} {'rm':>13} {'kl':>6} {'len':>5} {'s/it':>5} {'roll%':>5}"
    print(header)
    for s in summaries:
        print(
            f"{s['run']:<10} {s['gold_first']:.3f}->{s['gold_last']:.3f} "
            f"{s['rm_first']:+.2f}->{s['rm_last']:+.2f} {s['kl_last']:6.2f} "
            f"{s['length_last']:5.2f} {s['s_per_iter']:5.2f} {100 * s['rollout_share']:5.1f}"
        )
    print(f"(first / last {args.window} iterations; plots: {png})")


if __name__ == "__main__":
    main()

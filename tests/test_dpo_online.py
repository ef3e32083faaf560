"""Semi-online DPO: rounds of fresh pairs sampled from the current policy and scored by a Python
reward; an interrupted run resumes exactly (reusing the round it had already written), and a
refreshed reference equals the policy at the start of each round."""

import json
import shutil

import numpy as np
import pytest
from tiny_runs import write_demo_prompts

from jalign.demo import paths
from jalign.demo.run import stage_config
from jalign.train.loop import train
from jalign.train.online import round_path
from jalign.train.trainers import objectives

EVERY, TOTAL = 2, 6


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    return write_demo_prompts(tmp_path_factory.mktemp("online") / "prompts.jsonl")


ONLINE = {
    "every": EVERY,
    "prompts_per_round": 8,
    "samples": 4,
    "max_new_tokens": 8,
    "batch_size": 8,
    "reward_fn": "jalign.demo.task:gold_reward_fn",
    "reference": "refresh",
}


def _run(run_dir, prompts, steps=TOTAL):
    cfg = stage_config(
        "dpo",
        run_dir,
        model={"path": str(paths()), "init": "random"},
        data={"max_length": 32, "num_epochs": None},
        train={
            "batch_size": 8,
            "total_steps": steps,
            "log_every": 1,
            "save_every": EVERY,
            "export_hf": False,
        },
        optimizer={"lr": 3e-3, "warmup_steps": 0, "total_steps": TOTAL},
        dpo={"loss_type": "sigmoid", "beta": 0.5},
    )
    cfg.dpo.online.update({**ONLINE, "prompts": str(prompts)})
    return train(cfg, objectives()["dpo"])


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_semi_online_rounds_resume_and_refresh(prompts_file, tmp_path):
    straight = tmp_path / "straight"
    _run(straight, prompts_file)
    records = _records(straight)
    rounds = [r for r in records if "online/round" in r]
    assert [(r["step"], r["online/round"]) for r in rounds] == [(1, 0), (3, 1), (5, 2)]
    assert all(r["online/pairs"] >= 1 for r in rounds)
    for index in range(3):
        pairs = round_path(straight, index).read_text().splitlines()
        assert len(pairs) == rounds[index]["online/pairs"]
        first = json.loads(pairs[0])
        assert first["chosen_score"] > first["rejected_score"]
    losses = {r["step"]: r["loss"] for r in records if "loss" in r}
    assert sorted(losses) == list(range(1, TOTAL + 1))
    # A refreshed reference is the policy itself at each round's first step: z = 0.
    for step in (1, 3, 5):
        assert losses[step] == pytest.approx(np.log(2), abs=1e-6)
    for step in (2, 4, 6):
        assert abs(losses[step] - np.log(2)) > 1e-4

    # Interrupted after step 5 with its last complete checkpoint at step 4 (round 2's pairs
    # already written), then resumed: the same losses, and round 2 is read back, not redrawn.
    killed = tmp_path / "killed"
    _run(killed, prompts_file, steps=5)
    shutil.rmtree(killed / "checkpoints" / "5")
    written = round_path(killed, 2).stat().st_mtime_ns
    _run(killed, prompts_file)
    resumed = {r["step"]: r["loss"] for r in _records(killed) if "loss" in r}
    assert resumed == losses
    assert round_path(killed, 2).stat().st_mtime_ns == written
    for index in range(3):
        assert round_path(killed, index).read_text() == round_path(straight, index).read_text()

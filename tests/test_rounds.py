"""Round-based training data: the selectors on constructed scores (pairs and kept samples, plain
and chat prompts), and rejection-sampling fine-tuning end to end on a tiny model."""

import json

import numpy as np
import pytest
from tiny_runs import write_demo_prompts

from jalign.demo import paths
from jalign.demo.run import stage_config
from jalign.errors import JalignError
from jalign.train.loop import train
from jalign.train.online import round_path, select_pairs, select_top
from jalign.train.trainers import objectives

SCORES = np.array([0.1, 0.9, 0.5, 0.3, 0.3, 0.2])  # 2 prompts x 3 samples
TEXTS = ["a", "b", "c", "d", "e", "f"]


def test_select_top_best_per_prompt_and_top_fraction():
    prompts = ["p"] * 3 + ["q"] * 3
    best, stats = select_top(prompts, TEXTS, SCORES, 3, "best_per_prompt", 0.0, -1e9)
    assert [(r["prompt"], r["completion"]) for r in best] == [("p", "b"), ("q", "d")]
    assert stats == {"kept": 2.0, "reward_kept": pytest.approx(0.6)}
    top, _ = select_top(prompts, TEXTS, SCORES, 3, "top_fraction", 0.5, -1e9)
    assert [r["completion"] for r in top] == ["b", "c", "d"]  # ties keep the earlier sample
    floor, _ = select_top(prompts, TEXTS, SCORES, 3, "best_per_prompt", 0.0, 0.4)
    assert [r["completion"] for r in floor] == ["b"]


def test_chat_prompts_get_assistant_messages():
    chat = [{"role": "user", "content": "p"}]
    prompts = [chat] * 3 + [[{"role": "user", "content": "q"}]] * 3
    kept, _ = select_top(prompts, TEXTS, SCORES, 3, "best_per_prompt", 0.0, -1e9)
    assert kept[0]["messages"] == [*chat, {"role": "assistant", "content": "b"}]
    pairs, stats = select_pairs(prompts, TEXTS, SCORES, 3, "best_worst", 0.0, None)
    assert pairs[0]["prompt"] == chat
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "b"}]
    assert pairs[0]["rejected"] == [{"role": "assistant", "content": "a"}]
    assert stats["pairs"] == 2.0 and stats["reward_chosen"] == pytest.approx(0.6)


def ones_reward(prompts, completions):
    """How many "1" digits a completion writes."""
    return np.array([c.split().count("1") for c in completions], np.float64)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    return write_demo_prompts(tmp_path_factory.mktemp("rft") / "prompts.jsonl")


def _config(run_dir, prompts, **rft):
    cfg = stage_config(
        "rft",
        run_dir,
        model={"path": str(paths()), "init": "random"},
        data={"max_length": 32, "num_epochs": None},
        train={"batch_size": 8, "total_steps": 4, "log_every": 1, "save_every": 2},
        optimizer={"lr": 3e-3, "warmup_steps": 0},
    )
    cfg.rft.update(
        {
            "every": 2,
            "prompts": str(prompts),
            "prompts_per_round": 8,
            "samples": 4,
            "max_new_tokens": 8,
            "batch_size": 8,
            "reward_fn": "tests.test_rounds:ones_reward",
            **rft,
        }
    )
    return cfg


def test_rejection_sampling_fine_tuning_trains_on_each_rounds_best(prompts_file, tmp_path):
    result = train(_config(tmp_path / "rft", prompts_file), objectives()["rft"])
    records = [json.loads(line) for line in (tmp_path / "rft" / "metrics.jsonl").open()]
    rounds = [r for r in records if "online/round" in r]
    assert [r["online/round"] for r in rounds] == [0.0, 1.0]
    for r in rounds:  # the best of 4 samples scores at least the mean sample
        assert r["online/kept"] == 8.0
        assert r["online/reward_kept"] >= r["online/reward_mean"]
    kept = [json.loads(line) for line in round_path(tmp_path / "rft", 1).open()]
    assert all(r["score"] == ones_reward(None, [r["completion"]])[0] for r in kept)
    assert np.isfinite(result.metrics["loss"])
    assert (tmp_path / "rft" / "hf" / "config.json").exists()


def test_rft_config_errors_name_the_key(prompts_file, tmp_path):
    cfg = _config(tmp_path / "bad", prompts_file, reward_model="some/folder")
    with pytest.raises(JalignError, match=r"exactly one of rft.reward_fn .* and rft.reward_model"):
        train(cfg, objectives()["rft"])

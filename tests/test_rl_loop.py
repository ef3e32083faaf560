"""The online RL loop end to end on a tiny random-init model of the demo task's tokenizer: a
GRPO run learns an easy reward, the first minibatch's ratio is exactly 1, the sampler's
log-probs stand in for recomputed ones, a run killed mid-way resumes bit for bit, and PPO's value
model starts as the reward model."""

import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from jalign.demo import ideal_completion, paths, sample_prompts
from jalign.rl.loop import RLRun
from jalign.rl.schema import rl_schema

TOKEN = "7"


def seven_fraction(prompts, completions):
    """Fraction of the (at most 8) completion slots that hold the digit 7: easy to learn."""
    return np.asarray([c.split().count(TOKEN) / 8 for c in completions], np.float32)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A 2-layer, 32-wide copy of the demo model config (random init) and 64 task prompts."""
    root = tmp_path_factory.mktemp("rl")
    model = root / "model"
    shutil.copytree(paths(), model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8)
    (model / "config.json").write_text(json.dumps(config))
    prompts = sample_prompts(64, np.random.default_rng(0))
    data = root / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    sft = root / "sft.jsonl"
    sft.write_text(
        "".join(
            json.dumps({"prompt": p, "completion": ideal_completion(p)}) + "\n" for p in prompts
        )
    )
    return model, data, sft


def _config(assets, run_dir, command="grpo", **rl) -> ml_collections.ConfigDict:
    model, data, _ = assets
    cfg = ml_collections.ConfigDict(rl_schema(command).defaults.to_dict())
    cfg.run_dir = str(run_dir)
    cfg.model.path, cfg.model.init = str(model), "random"
    cfg.data.train, cfg.data.max_length, cfg.data.num_epochs = str(data), 16, None
    cfg.train.batch_size, cfg.train.total_steps, cfg.train.export_hf = 4, 8, False
    cfg.train.save_every, cfg.train.keep_checkpoints = 2, 4
    cfg.optimizer.lr = 1e-2
    cfg.rl.n, cfg.rl.minibatch_size, cfg.rl.epochs, cfg.rl.max_new_tokens = 4, 8, 2, 8
    cfg.rl.rewards = [f"function:{__name__}:seven_fraction"]
    cfg.rl.update(rl)
    return cfg


def _records(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if not k.startswith("time")} for x in lines]


@pytest.fixture(scope="module")
def straight(assets, tmp_path_factory):
    """An uninterrupted 8-iteration GRPO run and its last iteration's per-step metrics."""
    run_dir = tmp_path_factory.mktemp("straight")
    run = RLRun(_config(assets, run_dir))
    run.run()
    return run_dir, run.update_metrics


def test_grpo_raises_an_easy_reward(straight):
    records = _records(straight[0])
    assert [r["step"] for r in records] == list(range(1, 9))
    scores = [r["objective/scores"] for r in records]
    assert np.mean(scores[-2:]) > np.mean(scores[:2]) + 0.1, scores
    assert records[-1]["objective/kl"] > 0  # the policy moved away from the reference


def test_first_minibatch_ratio_is_exactly_one(straight):
    steps = straight[1]  # 2 epochs x 2 minibatches of the last iteration
    assert len(steps) == 4
    assert float(steps[0]["policy/ratio_max_dev"]) == 0.0
    assert float(steps[0]["policy/ratio_mean"]) == 1.0
    assert float(steps[1]["policy/ratio_max_dev"]) > 0  # later minibatches see moved params
    # The separately recomputed old log-probs are the sampler's (same temperature).
    assert _records(straight[0])[-1]["rollout/logprob_mismatch"] < 1e-5


def test_sampler_old_logprobs_stand_in_for_recomputed(assets, tmp_path):
    """rl.old_logprobs="sampler" skips the policy's forward before the update: the first
    iteration (same rollout) trains as the recomputing run does, up to float rounding."""
    metrics, steps = {}, {}
    for mode in ("recompute", "sampler"):
        cfg = _config(assets, tmp_path / mode, old_logprobs=mode)
        cfg.train.total_steps = 1
        run = RLRun(cfg)
        metrics[mode] = run.run()
        steps[mode] = run.update_metrics
    recomputed, sampled = metrics["recompute"], metrics["sampler"]
    assert recomputed["rollout/logprob_mismatch"] < 1e-5
    assert "rollout/logprob_mismatch" not in sampled  # nothing recomputed to compare with
    assert sampled["objective/scores"] == recomputed["objective/scores"]  # the same rollout
    for name in ("objective/kl", "loss/policy", "policy/approxkl", "policy/kl_ref"):
        np.testing.assert_allclose(sampled[name], recomputed[name], rtol=1e-4, atol=1e-6)
    # The one-sample entropy estimate -log pi(y_t) vs the exact entropy of the same policy.
    assert 0.5 < sampled["objective/entropy"] / recomputed["objective/entropy"] < 2
    assert float(steps["sampler"][0]["policy/ratio_max_dev"]) == 0.0
    assert float(steps["sampler"][1]["policy/ratio_max_dev"]) > 0


def test_killed_run_resumes_bit_for_bit(assets, straight, tmp_path):
    """The straight run's directory as a run killed in iteration 6 leaves it: checkpoints up to
    iteration 4 and metrics up to 5. Resuming repeats iterations 5-8 exactly."""
    run_dir = tmp_path / "killed"
    shutil.copytree(straight[0], run_dir)
    for step in (6, 8):
        shutil.rmtree(run_dir / "checkpoints" / str(step))
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:5]))
    resumed = RLRun(_config(assets, run_dir))
    assert resumed.iteration == 4
    resumed.run()
    assert _records(run_dir) == _records(straight[0])  # exact float equality


def test_ppo_value_starts_as_reward_model_and_one_device_agrees(assets, tmp_path):
    """PPO-ptx is on too (an SFT loss term on the demo answers). The first iteration's
    statistics on the 8 simulated devices match a single-device run's."""
    from jalign.interop import save_hf_model
    from jalign.models import create_model, load_hf_config

    model_cfg = load_hf_config(assets[0])
    _, rm_params = create_model(model_cfg, head="scalar", seed=5)
    rm_dir = tmp_path / "rm"
    save_hf_model(
        rm_dir, model_cfg, jax.device_get(rm_params), source_config=assets[0], head="scalar"
    )
    ppo = dict(rewards=[f"model:{rm_dir}"], n=2, ptx_coef=0.5, ptx_data=str(assets[2]))
    cfg = _config(assets, tmp_path / "run", "ppo", **ppo)
    cfg.train.total_steps = 1
    run = RLRun(cfg)
    value = jax.device_get(run.value.state.params)
    jax.tree.map(np.testing.assert_array_equal, value, jax.device_get(rm_params))
    metrics = run.run()
    assert np.isfinite(metrics["val/explained_variance"])
    assert metrics["loss/value"] > 0
    assert metrics["loss/ptx"] > 0
    assert float(run.update_metrics[0]["policy/ratio_max_dev"]) == 0.0

    cfg.run_dir = str(tmp_path / "one_device")
    cfg.mesh = "data=1,fsdp=1,tensor=1"
    single = RLRun(cfg, devices=jax.devices()[:1]).run()
    assert jax.device_count() == 8
    for name in ("objective/scores", "objective/kl", "loss/policy", "loss/value", "loss/ptx"):
        np.testing.assert_allclose(single[name], metrics[name], rtol=1e-4, atol=1e-6)
    assert single["response/length_mean"] == metrics["response/length_mean"]

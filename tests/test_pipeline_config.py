"""The pipeline config: every stage's trainer keys are allowed and checked under its prefix, the
demo run's outputs are filled into string values, and unknown stages are refused."""

import pytest

from jalign.errors import JalignError
from jalign.pipeline import load_pipeline_config, stage_config

CONFIG = "configs/pipeline_demo.py"
OUTPUTS = {"sft": "/m/sft", "rm": "/m/rm", "data": "/d"}


def test_placeholders_and_run_dirs_are_filled():
    cfg = load_pipeline_config(CONFIG, ["--config.ppo.rl.kl_coef=0.02"])
    ppo = stage_config(cfg, "ppo", OUTPUTS)
    assert ppo.model.path == "/m/sft"
    assert ppo.rl.rewards == ["model:/m/rm"]
    assert ppo.rl.monitor_rewards == ["function:jalign.demo.task:gold_reward_fn"]
    assert ppo.data.train == "/d/prompts_train.jsonl"
    assert ppo.rl.kl_coef == 0.02
    assert ppo.run_dir == "runs/pipeline/ppo"
    grpo = stage_config(cfg, "grpo", OUTPUTS)
    assert grpo.rl.monitor_rewards == ["model:/m/rm"]
    online = stage_config(cfg, "semi_online_dpo", OUTPUTS).dpo.online
    assert online.prompts == "/d/prompts_train.jsonl"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--config.ppo.rl.kl_coeff=0.1", "kl_coef"),
        ("--config.grpo.rl.estimator=ppo", "allowed values: 'grpo'"),
        ("--config.dpo.dpo.loss_type=sigmod", "allowed values: 'sigmoid'"),
        ("--config.stages=['dpo','rlhf']", "allowed values: dpo, semi_online_dpo, ppo, grpo"),
    ],
)
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(JalignError, match=message):
        load_pipeline_config(CONFIG, [override])

"""Every bundled config file loads and validates against its command's schema."""

from pathlib import Path

import pytest

from jalign.errors import JalignError
from jalign.pipeline import load_pipeline_config
from jalign.rl.command import load_rl_config
from jalign.train.trainers import load_trainer_config

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = {
    "sft_demo.py": "sft",
    "rm_demo.py": "rm",
    "dpo_demo.py": "dpo",
    "kto_demo.py": "dpo",
    "semi_online_dpo_demo.py": "dpo",
    "rft_demo.py": "rft",
    "llama3_8b_v5p64.py": "dpo",
    "llama3_8b_h100x8.py": "dpo",
    "ppo_demo.py": "ppo",
    "grpo_demo.py": "grpo",
    "smollm2_grpo_arithmetic.py": "grpo",
    "smollm2_dpo_arithmetic.py": "dpo",
    "smollm2_sft_arithmetic.py": "sft",
    "pipeline_demo.py": "pipeline",
}


def test_every_config_is_listed():
    assert sorted(p.name for p in ROOT.glob("*.py")) == sorted(CONFIGS)


@pytest.mark.parametrize(("name", "command"), sorted(CONFIGS.items()))
def test_bundled_configs_validate(name, command):
    path = str(ROOT / name)
    if command == "pipeline":
        cfg = load_pipeline_config(path, ["--config.dpo.train.total_steps=7"])
        assert cfg.dpo.train.total_steps == 7
    elif command in ("ppo", "grpo"):
        cfg = load_rl_config(command, path, ["--config.train.total_steps=7"])
        assert cfg.train.total_steps == 7
    else:
        cfg, objective = load_trainer_config(command, path, ["--config.train.total_steps=7"])
        assert objective.name == command and cfg.train.total_steps == 7


def test_bad_values_name_key_and_allowed_values():
    with pytest.raises(
        JalignError, match=r"'dpo\.loss_type' has value 'sigmod'; allowed values: 'sigmoid'"
    ):
        load_trainer_config("dpo", str(ROOT / "dpo_demo.py"), ["--config.dpo.loss_type=sigmod"])
    with pytest.raises(JalignError, match=r"did you mean 'optimizer\.lr'"):
        load_trainer_config("sft", str(ROOT / "sft_demo.py"), ["--config.optimizer.lrr=1e-3"])
    with pytest.raises(JalignError, match=r"'model\.dtype' has value 'float8'"):
        load_trainer_config("rm", str(ROOT / "rm_demo.py"), ["--config.model.dtype=float8"])

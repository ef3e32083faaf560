"""Every bundled config file loads and validates against its trainer's schema."""

from pathlib import Path

import pytest

from jalign.errors import JalignError
from jalign.train.trainers import load_trainer_config

CONFIGS = {"sft_demo.py": "sft", "rm_demo.py": "rm", "dpo_demo.py": "dpo"}
ROOT = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(("name", "trainer"), sorted(CONFIGS.items()))
def test_bundled_configs_validate(name, trainer):
    cfg, objective = load_trainer_config(
        trainer, str(ROOT / name), ["--config.train.total_steps=7"]
    )
    assert objective.name == trainer and cfg.train.total_steps == 7


def test_bad_values_name_key_and_allowed_values():
    with pytest.raises(
        JalignError, match=r"'dpo\.loss_type' has value 'sigmod'; allowed values: 'sigmoid'"
    ):
        load_trainer_config("dpo", str(ROOT / "dpo_demo.py"), ["--config.dpo.loss_type=sigmod"])
    with pytest.raises(JalignError, match=r"did you mean 'optimizer\.lr'"):
        load_trainer_config("sft", str(ROOT / "sft_demo.py"), ["--config.optimizer.lrr=1e-3"])
    with pytest.raises(JalignError, match=r"'model\.dtype' has value 'float8'"):
        load_trainer_config("rm", str(ROOT / "rm_demo.py"), ["--config.model.dtype=float8"])

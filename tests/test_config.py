"""Run configs: file import, typed command-line overrides, schema errors that say what to do."""

import json
import re
import textwrap

import pytest
from ml_collections import ConfigDict, config_dict

from jalign.config import (
    Schema,
    between,
    config_hash,
    greater_than,
    load_config,
    save_config,
)
from jalign.errors import JalignError

SCHEMA = Schema(
    defaults=ConfigDict(
        {
            "seed": 0,
            "model": {"path": config_dict.placeholder(str), "remat": False},
            "optimizer": {"lr": 1e-4, "total_steps": 100, "weight_decay": 0.0},
            "data": {"buckets": (128, 256), "name": "ultrafeedback"},
            "dpo": {"beta": 0.1, "loss_type": "sigmoid", "label_smoothing": 0.0},
        }
    ),
    choices={"dpo.loss_type": ("sigmoid", "ipo", "hinge")},
    checks={"optimizer.lr": greater_than(0), "dpo.label_smoothing": between(0.0, 0.5)},
)

CONFIG_FILE = """\
from ml_collections import ConfigDict


def get_config():
    cfg = ConfigDict()
    cfg.optimizer = ConfigDict()
    cfg.optimizer.lr = 5e-7
    cfg.dpo = ConfigDict()
    cfg.dpo.{beta_key} = 0.2
    return cfg
"""


def _write(tmp_path, beta_key="beta"):
    path = tmp_path / "dpo.py"
    path.write_text(CONFIG_FILE.format(beta_key=beta_key))
    return path


def test_file_values_are_laid_onto_schema_defaults_and_locked(tmp_path):
    cfg = load_config(_write(tmp_path), schema=SCHEMA)
    assert cfg.optimizer.lr == 5e-7
    assert cfg.dpo.beta == 0.2
    assert cfg.optimizer.total_steps == 100  # from defaults
    assert cfg.model.path is None
    with pytest.raises(AttributeError):
        cfg.optimizer.lrr = 1.0  # a typo in code raises too


def test_overrides_are_parsed_and_coerced_to_the_field_type(tmp_path):
    cfg = load_config(
        _write(tmp_path),
        [
            "--config.optimizer.lr=1",  # int text -> float field
            "--config.optimizer.total_steps=1e3",  # integral float -> int field
            "--config.data.buckets=[64,128]",  # list -> tuple field
            "--config.model.remat=true",  # bool from lowercase text
            "--config.model.path=/x/y=z",  # placeholder(str) takes the raw text
            "--config.data.name=123",  # str field keeps digits as a string
            "--config.dpo.beta=0.5",
        ],
        schema=SCHEMA,
    )
    assert cfg.optimizer.lr == 1.0 and type(cfg.optimizer.lr) is float
    assert cfg.optimizer.total_steps == 1000 and type(cfg.optimizer.total_steps) is int
    assert cfg.data.buckets == (64, 128) and type(cfg.data.buckets) is tuple
    assert cfg.model.remat is True
    assert cfg.model.path == "/x/y=z"
    assert cfg.data.name == "123"
    assert cfg.dpo.beta == 0.5


def test_none_override_and_later_override_wins(tmp_path):
    cfg = load_config(
        _write(tmp_path),
        ["--config.model.path=/a", "--config.model.path=/b", "--config.dpo.beta=null"],
        schema=SCHEMA,
    )
    assert cfg.model.path == "/b"
    assert cfg.dpo.beta is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--config.optimizer.total_steps=2.5", "config key 'optimizer.total_steps' expects an int"),
        ("--config.model.remat=maybe", "config key 'model.remat' expects a bool"),
        ("--config.data.buckets=64", "config key 'data.buckets' expects a tuple"),
        ("--config.data.buckets=[64,1.5]", "config key 'data.buckets[1]' expects an int"),
        ("--config.optimizer=1", "config key 'optimizer' is a section; set its keys instead: lr"),
        ("--config.optimizer.lr.x=1", "'optimizer.lr' is a value, not a section"),
        ("optimizer.lr=1", "must look like --config.KEY=VALUE"),
    ],
)
def test_bad_override_values_are_rejected(tmp_path, override, expected):
    with pytest.raises(JalignError, match=re.escape(expected)):
        load_config(_write(tmp_path), [override], schema=SCHEMA)


def test_unknown_override_key_names_key_suggestion_and_allowed_keys(tmp_path):
    with pytest.raises(JalignError) as err:
        load_config(_write(tmp_path), ["--config.optimizer.lrr=1e-5"], schema=SCHEMA)
    assert str(err.value) == (
        "override --config.optimizer.lrr=1e-5: unknown config key 'optimizer.lrr'; "
        "did you mean 'optimizer.lr'? allowed keys under 'optimizer': lr, total_steps, "
        "weight_decay"
    )


def test_unknown_top_level_key_suggests_the_nested_key(tmp_path):
    with pytest.raises(
        JalignError,
        match=r"unknown config key 'lr'; did you mean 'optimizer.lr'\? "
        r"allowed keys at top level: data, dpo, model, optimizer, seed",
    ):
        load_config(_write(tmp_path), ["--config.lr=1e-5"], schema=SCHEMA)


def test_unknown_key_in_file_names_file_line_and_suggestion(tmp_path):
    path = _write(tmp_path, beta_key="betta")
    with pytest.raises(JalignError) as err:
        load_config(path, schema=SCHEMA)
    assert str(err.value).startswith(
        f"{path}:9: unknown config key 'dpo.betta'; did you mean 'dpo.beta'?"
    )
    assert "allowed keys under 'dpo': beta, label_smoothing, loss_type" in str(err.value)


def test_without_schema_the_file_keys_are_the_allowed_keys(tmp_path):
    cfg = load_config(_write(tmp_path), ["--config.dpo.beta=3"])
    assert cfg.dpo.beta == 3.0
    with pytest.raises(JalignError, match=re.escape("did you mean 'dpo.beta'")):
        load_config(_write(tmp_path), ["--config.dpo.bta=3"])


def test_enum_error_names_key_value_and_allowed_values(tmp_path):
    with pytest.raises(JalignError) as err:
        load_config(_write(tmp_path), ["--config.dpo.loss_type=sigmod"], schema=SCHEMA)
    assert str(err.value) == (
        "override --config.dpo.loss_type=sigmod: config key 'dpo.loss_type' has value 'sigmod'; "
        "allowed values: 'sigmoid', 'ipo', 'hinge'"
    )


def test_range_checks(tmp_path):
    with pytest.raises(JalignError, match=r"config key 'optimizer.lr' must be > 0, got -1.0"):
        load_config(_write(tmp_path), ["--config.optimizer.lr=-1"], schema=SCHEMA)
    with pytest.raises(
        JalignError, match=r"'dpo.label_smoothing' must be in \[0.0, 0.5\], got 0.6"
    ):
        load_config(_write(tmp_path), ["--config.dpo.label_smoothing=0.6"], schema=SCHEMA)


def test_check_failure_on_a_file_value_points_at_the_file_line(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(
        textwrap.dedent("""\
        from ml_collections import ConfigDict

        def get_config():
            return ConfigDict({"optimizer": {"lr": 0.0}})
        """)
    )
    with pytest.raises(
        JalignError, match="^" + re.escape(f"{path}:4: config key 'optimizer.lr' must be > 0")
    ):
        load_config(path, schema=SCHEMA)


def test_file_problems_are_user_errors(tmp_path):
    with pytest.raises(JalignError, match="does not exist"):
        load_config(tmp_path / "missing.py")
    no_fn = tmp_path / "no_fn.py"
    no_fn.write_text("x = 1\n")
    with pytest.raises(JalignError, match="must define get_config"):
        load_config(no_fn)
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(:\n")
    with pytest.raises(JalignError, match=re.escape(f"{broken}:1: syntax error")):
        load_config(broken)
    wrong_type = tmp_path / "wrong_type.py"
    wrong_type.write_text("def get_config():\n    return {'optimizer': {'lr': 'fast'}}\n")
    with pytest.raises(JalignError, match="returned dict"):
        load_config(wrong_type)


def test_schema_refuses_checks_on_unknown_keys():
    with pytest.raises(ValueError, match=re.escape("'optimizer.lrr'")):
        Schema(defaults=SCHEMA.defaults, checks={"optimizer.lrr": greater_than(0)})


def test_resolved_config_is_dumped_as_json_and_hashed(tmp_path):
    cfg = load_config(_write(tmp_path), ["--config.data.buckets=[64]"], schema=SCHEMA)
    path = save_config(cfg, tmp_path / "run")
    dumped = json.loads(path.read_text())
    assert path.name == "config.json"
    assert dumped["data"]["buckets"] == [64]
    assert dumped["optimizer"]["lr"] == 5e-7
    assert dumped["model"]["path"] is None
    other = load_config(_write(tmp_path), ["--config.data.buckets=[65]"], schema=SCHEMA)
    assert config_hash(cfg) == config_hash(
        load_config(_write(tmp_path), ["--config.data.buckets=[64]"], schema=SCHEMA)
    )
    assert config_hash(cfg) != config_hash(other)

"""The config schema shared by every trainer; each objective adds its own section.

A run config file (`configs/*.py`) overrides any of these defaults; a key that is not here (or
in the objective's section) is an error that names it and suggests the closest allowed key.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from jalign.config import Schema, at_least, greater_than
from jalign.data import DataConfig
from jalign.models.config import DTYPES
from jalign.train.optimizer import SCHEDULES, OptimizerConfig

MODEL_INITS = ("pretrained", "random")


def base_defaults() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/default"
    cfg.seed = 0

    cfg.model = ml_collections.ConfigDict()
    cfg.model.path = ""  # HF folder (config.json + safetensors) or a .gguf file
    cfg.model.init = "pretrained"  # "random": fresh weights from config.json (demo models)
    cfg.model.tokenizer = ""  # folder with the tokenizer; "" = model.path
    cfg.model.dtype = "float32"  # compute dtype
    cfg.model.param_dtype = "float32"  # master weights
    cfg.model.remat = False
    cfg.model.scan_layers = False

    cfg.mesh = "data=-1,fsdp=1,tensor=1"
    cfg.sharding = ml_collections.ConfigDict()
    cfg.sharding.rules = []  # [(regex, spec), ...] tried before the family defaults

    data = DataConfig().to_dict()
    cfg.data = ml_collections.ConfigDict(data)
    cfg.data.train = ""
    cfg.data.eval = ""

    cfg.train = ml_collections.ConfigDict()
    cfg.train.batch_size = 16
    cfg.train.grad_accum_steps = 1
    cfg.train.total_steps = 100
    cfg.train.log_every = 10
    cfg.train.eval_every = 50
    cfg.train.eval_batches = 8
    cfg.train.save_every = 50
    cfg.train.keep_checkpoints = 2
    cfg.train.export_hf = True

    opt = dataclasses.asdict(OptimizerConfig())
    opt["total_steps"] = 0  # 0: the schedule spans train.total_steps
    cfg.optimizer = ml_collections.ConfigDict(opt)
    return cfg


def base_schema(defaults: ml_collections.ConfigDict, choices=None, checks=None) -> Schema:
    return Schema(
        defaults=defaults,
        choices={
            "model.init": MODEL_INITS,
            "model.dtype": DTYPES,
            "model.param_dtype": DTYPES,
            "optimizer.schedule": SCHEDULES,
            **(choices or {}),
        },
        checks={
            "train.batch_size": at_least(1),
            "train.grad_accum_steps": at_least(1),
            "train.total_steps": at_least(1),
            "train.log_every": at_least(1),
            "train.eval_every": at_least(1),
            "train.save_every": at_least(1),
            "train.keep_checkpoints": at_least(1),
            "optimizer.lr": greater_than(0),
            **(checks or {}),
        },
    )

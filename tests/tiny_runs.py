"""Configs and data of the short trainer runs tests make on the random-init demo model, and the
one-layer Llama config of the step-level tests."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections

from jalign.demo import paths
from jalign.demo.build import DatasetSizes, demo_datasets
from jalign.demo.run import stage_config
from jalign.models import from_hf_dict

# A one-layer Llama (vocab 32, hidden 16, GQA 2:1) for tests of single steps and losses.
TINY_LLAMA = from_hf_dict(
    dict(
        model_type="llama",
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
)


def tiny_dpo_config(
    run_dir: Path, data: Path, steps: int = 6, **dpo: object
) -> ml_collections.ConfigDict:
    """`steps` DPO-trainer steps of 8 records on `data` (also the eval set), beta 0.5 unless
    `dpo` says otherwise, logged every step, one checkpoint at the end, no HF export."""
    return stage_config(
        "dpo",
        run_dir,
        model={"path": str(paths()), "init": "random"},
        data={"train": str(data), "eval": str(data), "max_length": 32, "num_epochs": None},
        train={
            "batch_size": 8,
            "total_steps": steps,
            "log_every": 1,
            "eval_every": steps,
            "save_every": steps,
            "eval_batches": 2,
            "export_hf": False,
        },
        optimizer={"lr": 3e-3, "warmup_steps": 0},
        dpo={"beta": 0.5, **dpo},
    )


def write_demo_prompts(path: Path) -> Path:
    """32 demo-task training prompts as {"prompt"} JSONL at `path` (a rounds trainer's input)."""
    sizes = DatasetSizes(sft_train=8, sft_eval=8, prompts_train=32, prompts_eval=8)
    records = demo_datasets(0, sizes)["prompts_train.jsonl"]
    path.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in records))
    return path

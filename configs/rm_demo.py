"""Bradley-Terry reward model on the demo task's preference pairs, from the SFT model.

python -m jalign.demo.run --out runs/demo    # writes runs/demo/sft/hf and the pair files
jalign rm --config configs/rm_demo.py
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/rm_cli"
    cfg.model = ml_collections.ConfigDict({"path": "runs/demo/sft/hf"})
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "runs/demo/data/prefs_train.jsonl",
            "eval": "runs/demo/data/prefs_eval_gold.jsonl",
            "max_length": 32,
            "num_epochs": None,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 64, "total_steps": 400, "eval_every": 100, "save_every": 100}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-3, "warmup_steps": 10, "weight_decay": 0.1})
    return cfg

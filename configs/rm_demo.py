"""Bradley-Terry reward model on the demo task's ranked samples, from the SFT model: each record
ranks 8 samples of one prompt and trains on all 28 comparisons at once (`rm.data_kind`).

python -m jalign.demo.run --out runs/demo    # writes runs/demo/sft/hf and the ranking files
jalign rm --config configs/rm_demo.py

For preference pairs instead, point `data.train` / `data.eval` at `prefs_train.jsonl` /
`prefs_eval_gold.jsonl` and set `--config.rm.data_kind=preference`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/rm_cli"
    cfg.model = ml_collections.ConfigDict({"path": "runs/demo/sft/hf"})
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "runs/demo/data/rankings_train.jsonl",
            "eval": "runs/demo/data/rankings_eval_gold.jsonl",
            "max_length": 32,
            "num_epochs": None,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 32, "total_steps": 300, "eval_every": 100, "save_every": 100}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-3, "warmup_steps": 10, "weight_decay": 0.1})
    cfg.rm = ml_collections.ConfigDict({"data_kind": "ranked"})
    return cfg

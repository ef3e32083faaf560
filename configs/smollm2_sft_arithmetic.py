"""SFT of the real SmolLM2-135M-Instruct on correct arithmetic answers (chat form, loss on the
assistant turn), the warm-up before RL with the checker.

python -m jalign.tasks.arithmetic --out runs/smollm2_arith/data
jalign sft --config configs/smollm2_sft_arithmetic.py

Not measured yet (the GRPO config is; see README). Evaluate with `jalign eval` as there.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/smollm2_arith/sft"
    cfg.model = ml_collections.ConfigDict({"path": "smollm2"})
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "runs/smollm2_arith/data/sft_train.jsonl",
            "max_length": 64,
            "buckets": [64],
            "num_epochs": None,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 16, "total_steps": 100, "save_every": 50, "log_every": 10}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-5, "warmup_steps": 10})
    return cfg

"""Semi-online DPO on the real SmolLM2-135M-Instruct with a verifiable reward: every 10 steps,
sample 4 answers to each of 32 arithmetic questions from the current policy, pair the best and
worst by the checker (`jalign.tasks.arithmetic.reward_fn`), and train on those pairs.

python -m jalign.tasks.arithmetic --out runs/smollm2_arith/data
jalign dpo --config configs/smollm2_dpo_arithmetic.py

Not measured yet (the GRPO config is; see README). Evaluate with `jalign eval` as there.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/smollm2_arith/dpo"
    cfg.model = ml_collections.ConfigDict({"path": "smollm2"})
    cfg.data = ml_collections.ConfigDict({"max_length": 80, "buckets": [80], "num_epochs": None})
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 8, "total_steps": 40, "save_every": 10, "log_every": 1}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 5e-7, "warmup_steps": 2})
    cfg.dpo = ml_collections.ConfigDict({"loss_type": "sigmoid", "beta": 0.1})
    cfg.dpo.online = ml_collections.ConfigDict(
        {
            "every": 10,
            "prompts": "runs/smollm2_arith/data/prompts_train.jsonl",
            "prompts_per_round": 32,
            "samples": 4,
            "temperature": 0.7,
            "max_new_tokens": 12,
            "batch_size": 32,
            "reward_fn": "jalign.tasks.arithmetic:reward_fn",
        }
    )
    return cfg

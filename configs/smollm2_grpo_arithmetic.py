"""GRPO on the real SmolLM2-135M-Instruct with a verifiable reward: two-number arithmetic,
1.0 for the right answer, 0.1 for a wrong number (`jalign.tasks.arithmetic.reward_fn`).

python -m jalign.tasks.arithmetic --out runs/smollm2_arith/data
jalign grpo --config configs/smollm2_grpo_arithmetic.py

Measured (12 iterations of 4 prompts x 8 samples, 186 s on 2 CPU cores): greedy exact-answer
accuracy on 200 held-out questions 22.5% -> 27.5%, mean reward 0.303 -> 0.348, answers 15.8 ->
12.0 tokens (`jalign eval --policy base=smollm2 --policy grpo=runs/smollm2_arith/grpo/hf
--prompts runs/smollm2_arith/data/prompts_eval.jsonl --reward acc=jalign.tasks.arithmetic:reward_fn
--temperature 0`; exact accuracy is the share of rewards equal to 1). Longer runs are the obvious
next step.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/smollm2_arith/grpo"
    cfg.model = ml_collections.ConfigDict({"path": "smollm2"})
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "runs/smollm2_arith/data/prompts_train.jsonl",
            "max_length": 64,
            "buckets": [64],
            "num_epochs": None,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 4, "total_steps": 12, "save_every": 4, "log_every": 1}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-5, "schedule": "constant"})
    cfg.rl = ml_collections.ConfigDict(
        {
            "estimator": "grpo",
            "n": 8,
            "minibatch_size": 32,
            "temperature": 0.7,
            "max_new_tokens": 12,
            "rewards": ["function:jalign.tasks.arithmetic:reward_fn"],
            "kl_in": "loss",
            "kl_estimator": "k3",
            "kl_coef": 0.02,
            "loss_aggregation": "token-mean",
        }
    )
    return cfg

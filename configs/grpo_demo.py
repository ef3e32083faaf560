"""GRPO on the demo task with the gold verifier as the reward (RLVR), from the SFT model.

python -m jalign.demo.run --out runs/demo    # writes runs/demo/sft/hf and the prompt files
jalign grpo --config configs/grpo_demo.py [--config.rl.estimator=rloo|dr_grpo|reinforce_pp]
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/grpo_cli"
    cfg.model = ml_collections.ConfigDict({"path": "runs/demo/sft/hf"})
    cfg.data = ml_collections.ConfigDict(
        {
            "train": "runs/demo/data/prompts_train.jsonl",
            "max_length": 16,
            "buckets": [12, 16],  # the demo prompts take 8-12 tokens
            "num_epochs": None,
        }
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 16, "total_steps": 60, "save_every": 20, "log_every": 1}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-4, "schedule": "constant"})
    cfg.rl = ml_collections.ConfigDict(
        {
            "estimator": "grpo",
            "n": 8,
            "minibatch_size": 64,
            "epochs": 1,
            "max_new_tokens": 12,
            "rewards": ["function:jalign.demo.task:gold_reward_fn"],
            "monitor_rewards": ["model:runs/demo/rm/hf"],
            "missing_eos_penalty": 0.5,
            "kl_in": "loss",
            "kl_estimator": "k3",
            "kl_coef": 0.04,
            "loss_aggregation": "token-mean",
        }
    )
    return cfg

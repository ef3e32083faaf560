"""PPO on the demo task with the demo reward model (value model initialised from it), from the
SFT model; the gold reward is logged alongside (reward/gold_reward_fn), never trained on.

python -m jalign.demo.run --out runs/demo    # writes runs/demo/sft/hf, rm/hf and the prompts
jalign ppo --config configs/ppo_demo.py [--config.rl.kl_controller=adaptive]
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/ppo_cli"
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
            "estimator": "gae",
            "n": 4,
            "minibatch_size": 32,
            "epochs": 2,
            "max_new_tokens": 12,
            "rewards": ["model:runs/demo/rm/hf"],
            "monitor_rewards": ["function:jalign.demo.task:gold_reward_fn"],
            "missing_eos_penalty": 1.0,
            "kl_in": "reward",
            "kl_estimator": "k1",
            "kl_coef": 0.05,
            "value_init": "reward_model",
            "value_lr": 3e-4,
            "gamma": 1.0,
            "lam": 0.95,
        }
    )
    return cfg

"""Semi-online DPO on the demo task: every 20 steps, sample 4 completions for each of 320
training prompts from the current policy, score them with the gold reward (a verifier), and
train on best-vs-worst pairs. Set `dpo.online.reward_model = "runs/demo/rm/hf"` (and
`reward_fn = ""`) to score with the demo's reward model instead.

python -m jalign.demo.run --out runs/demo    # writes runs/demo/sft/hf and the prompt files
jalign dpo --config configs/semi_online_dpo_demo.py
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/semi_online_dpo_cli"
    cfg.model = ml_collections.ConfigDict({"path": "runs/demo/sft/hf"})
    cfg.data = ml_collections.ConfigDict(
        {"eval": "runs/demo/data/prefs_eval_gold.jsonl", "max_length": 32, "num_epochs": None}
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 32, "total_steps": 200, "eval_every": 100, "save_every": 20}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-4, "warmup_steps": 10})
    cfg.dpo = ml_collections.ConfigDict({"loss_type": "sigmoid", "beta": 0.1})
    cfg.dpo.online = ml_collections.ConfigDict(
        {
            "every": 20,
            "prompts": "runs/demo/data/prompts_train.jsonl",
            "prompts_per_round": 320,
            "samples": 4,
            "temperature": 1.0,
            "max_new_tokens": 16,
            "reward_fn": "jalign.demo.task:gold_reward_fn",
            "pairs": "best_worst",
            "reference": "fixed",
        }
    )
    return cfg

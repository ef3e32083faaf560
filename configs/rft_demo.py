"""Rejection-sampling fine-tuning (RAFT) on the demo task: every 25 steps, sample 4 completions
for each of 256 training prompts from the current policy, keep each prompt's best by the demo
reward model, and fine-tune on them. Set `rft.reward_fn = "jalign.demo.task:gold_reward_fn"`
(and `reward_model = ""`) to filter with the gold verifier instead (ReST-style:
`rft.keep = "top_fraction"`).

jalign pipeline --config configs/pipeline_demo.py   # or python -m jalign.demo.run: runs/.../sft/hf
jalign rft --config configs/rft_demo.py
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/demo/rft_cli"
    cfg.model = ml_collections.ConfigDict({"path": "runs/demo/sft/hf"})
    cfg.data = ml_collections.ConfigDict({"max_length": 32, "num_epochs": None})
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 32, "total_steps": 100, "save_every": 25, "log_every": 5}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 1e-4, "warmup_steps": 5})
    cfg.rft = ml_collections.ConfigDict(
        {
            "every": 25,
            "prompts": "runs/demo/data/prompts_train.jsonl",
            "prompts_per_round": 256,
            "samples": 4,
            "max_new_tokens": 16,
            "reward_model": "runs/demo/rm/hf",
            "keep": "best_per_prompt",
        }
    )
    return cfg

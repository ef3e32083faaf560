"""The whole pipeline on the demo task (README's main job):

    jalign pipeline --config configs/pipeline_demo.py

SFT -> rankings of the SFT policy's samples -> reward model (the `demo` section), then from the
same SFT model: offline DPO on the rankings' pairs, PPO with the reward model (value model
initialised from it), and the two verifier-driven methods, semi-online DPO and GRPO, with the
gold reward as their verifier; finally one evaluation table against the SFT model. "{sft}",
"{rm}" and "{data}" are the demo run's outputs. Offline DPO and semi-online DPO train for the
same number of steps on the same number of pairs per step.
"""

import ml_collections


def _section(**groups) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(groups)


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "runs/pipeline"
    cfg.stages = ["dpo", "semi_online_dpo", "ppo", "grpo"]
    cfg.eval = ml_collections.ConfigDict({"prompts": 200, "temperature": 1.0})

    dpo_data = {"max_length": 32, "num_epochs": None}
    cfg.dpo = _section(
        model={"path": "{sft}"},
        data={"train": "{data}/prefs_train.jsonl", **dpo_data},
        train={"batch_size": 32, "total_steps": 150, "save_every": 50},
        optimizer={"lr": 1e-4, "warmup_steps": 10},
        dpo={"loss_type": "sigmoid", "beta": 0.1},
    )
    cfg.semi_online_dpo = _section(
        model={"path": "{sft}"},
        data=dpo_data,
        train={"batch_size": 32, "total_steps": 150, "save_every": 25},
        optimizer={"lr": 1e-4, "warmup_steps": 10},
        dpo={
            "loss_type": "sigmoid",
            "beta": 0.1,
            "online": {
                "every": 25,
                "prompts": "{data}/prompts_train.jsonl",
                "prompts_per_round": 320,
                "samples": 4,
                "max_new_tokens": 16,
                "reward_fn": "jalign.demo.task:gold_reward_fn",
            },
        },
    )
    # the demo prompts take 8-12 tokens: batches pad to 12 (16 for a longer prompt)
    rl_data = {
        "train": "{data}/prompts_train.jsonl",
        "max_length": 16,
        "buckets": [12, 16],
        "num_epochs": None,
    }
    cfg.ppo = _section(
        model={"path": "{sft}"},
        data=rl_data,
        train={"batch_size": 16, "total_steps": 50, "save_every": 25},
        optimizer={"lr": 1e-4, "schedule": "constant"},
        rl={
            "n": 4,
            "minibatch_size": 32,
            "epochs": 2,
            "max_new_tokens": 12,
            "rewards": ["model:{rm}"],
            "monitor_rewards": ["function:jalign.demo.task:gold_reward_fn"],
            "missing_eos_penalty": 1.0,
            "kl_coef": 0.05,
            "value_init": "reward_model",
            "value_lr": 3e-4,
        },
    )
    cfg.grpo = _section(
        model={"path": "{sft}"},
        data=rl_data,
        train={"batch_size": 16, "total_steps": 50, "save_every": 25},
        optimizer={"lr": 1e-4, "schedule": "constant"},
        rl={
            "n": 8,
            "minibatch_size": 64,
            "max_new_tokens": 12,
            "rewards": ["function:jalign.demo.task:gold_reward_fn"],
            "monitor_rewards": ["model:{rm}"],
            "missing_eos_penalty": 0.5,
            "kl_coef": 0.04,
        },
    )
    return cfg

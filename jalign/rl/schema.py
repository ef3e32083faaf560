"""Config of the online RL trainers (`jalign ppo`, `jalign grpo`): the shared base schema plus
an `rl` section.

Sizes: each iteration samples `train.batch_size` prompts x `rl.n` completions = R rows, then
runs `rl.epochs` passes over them in minibatches of `rl.minibatch_size` rows (each split into
`train.grad_accum_steps` micro-batches); `train.total_steps` counts iterations.
"""

from __future__ import annotations

import ml_collections

from jalign.config import Check, Schema, at_least, between, greater_than
from jalign.errors import JalignError
from jalign.losses import AGGREGATION_MODES, KL_CONTROLLERS, KL_ESTIMATORS
from jalign.train.schema import base_defaults, base_schema

PPO = "ppo"
GRPO = "grpo"
CRITIC_FREE_ESTIMATORS = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline")
ESTIMATORS = {PPO: ("gae",), GRPO: CRITIC_FREE_ESTIMATORS}
KL_PLACEMENTS = ("reward", "loss")
VALUE_INITS = ("reward_model", "policy")
FROZEN_DTYPES = ("float32", "bfloat16")
OLD_LOGPROBS = ("recompute", "sampler")


def rl_section(command: str) -> ml_collections.ConfigDict:
    """The `rl` section's defaults for `command` ("ppo" or "grpo")."""
    ppo = command == PPO
    return ml_collections.ConfigDict(
        {
            # Advantages: "gae" (PPO with a value model) or a critic-free group estimator.
            "estimator": "gae" if ppo else "grpo",
            "n": 4 if ppo else 8,  # completions per prompt (a group)
            # Run each prompt through a model once for its group of n rows (its keys / values
            # cached and read by the n completions, `jalign.rl.forward`), in every forward and
            # update step; minibatches then hold whole groups (shuffled as groups). Needs the
            # micro-batch (minibatch_size / grad_accum_steps) to be a multiple of n.
            "share_prompt_forward": True,
            "minibatch_size": 32,  # rows per optimizer step
            "epochs": 1,  # passes over each rollout batch
            "temperature": 1.0,  # sampling temperature; logprobs use the same one
            # The update's "old" log-probs: a forward pass of the policy over the rollout
            # ("recompute", as verl / OpenRLHF; logs rollout/logprob_mismatch) or the sampler's
            # own ("sampler", as TRL's PPOTrainer; one policy forward fewer per iteration). The
            # sampler runs the trainer's code on the same params, so they differ by float
            # rounding only (the mismatch metric: ~1e-6 in fp32).
            "old_logprobs": "recompute",
            "max_new_tokens": 16,
            # Rewards: "model:PATH" (scalar-head HF folder) or "function:module:fn" with
            # fn(prompts, completions) -> scores; the score is their weighted sum.
            "rewards": ["function:jalign.demo.task:gold_reward_fn"],
            "reward_weights": [1.0],  # one per reward; [] = all 1
            "monitor_rewards": [],  # logged as reward/<name>, never trained on
            "missing_eos_penalty": 0.0,  # subtracted from completions without EOS (0 = off)
            "score_clip": 0.0,  # clip scores to [-c, c] (0 = off)
            "whiten_scores": False,
            "kl_in": "reward" if ppo else "loss",  # KL as a reward penalty or a loss term
            "kl_estimator": "k1" if ppo else "k3",
            "kl_controller": "fixed",
            "kl_coef": 0.05 if ppo else 0.04,
            "kl_target": 6.0,  # adaptive controller: target sequence KL
            "kl_horizon": 10000.0,
            "clip_eps": 0.2,
            "clip_eps_high": 0.0,  # > clip_eps: DAPO's clip-higher (0 = same as clip_eps)
            "dual_clip": 0.0,  # > 1: dual clip bound on negative advantages (0 = off)
            "entropy_coef": 0.0,
            "loss_aggregation": "token-mean",
            "whiten_advantages": ppo,
            "gamma": 1.0,
            "lam": 0.95,
            # PPO's value model.
            "value_init": "reward_model",  # first "model:" reward, or the policy's backbone
            "value_clip_eps": 0.2,
            "value_coef": 0.1,
            "value_lr": 0.0,  # 0 = optimizer.lr
            "frozen_dtype": "float32",  # reference and reward models' params
            # Park the frozen models (reference, reward models) in host memory between their
            # forward phases: on the device only while they run (`jalign.rl.setup.FrozenParams`).
            "offload_frozen": False,
            # PPO-ptx (Ouyang et al. 2022): + ptx_coef x SFT loss on a minibatch of ptx_data.
            "ptx_coef": 0.0,  # 0 = off
            "ptx_data": "",  # an SFT-kind data file
            "ptx_max_length": 32,  # its rows' width (data.max_length sizes the prompts)
        }
    )


def rl_defaults(command: str) -> ml_collections.ConfigDict:
    cfg = base_defaults()
    cfg.train.batch_size = 8
    cfg.train.log_every = 1
    cfg.train.save_every = 10
    cfg.optimizer.lr = 1e-5
    cfg.optimizer.schedule = "constant"
    cfg.rl = rl_section(command)
    return cfg


def rl_schema(command: str) -> Schema:
    """The schema of `jalign <command>`; bad values are errors naming the key and what it
    allows."""
    if command not in ESTIMATORS:
        raise JalignError(f"unknown RL command {command!r}; allowed: {', '.join(ESTIMATORS)}")
    positive = greater_than(0)
    return base_schema(
        rl_defaults(command),
        choices={
            "rl.estimator": ESTIMATORS[command],
            "rl.kl_in": KL_PLACEMENTS,
            "rl.kl_estimator": KL_ESTIMATORS,
            "rl.kl_controller": KL_CONTROLLERS,
            "rl.loss_aggregation": AGGREGATION_MODES,
            "rl.value_init": VALUE_INITS,
            "rl.frozen_dtype": FROZEN_DTYPES,
            "rl.old_logprobs": OLD_LOGPROBS,
        },
        checks={
            "rl.n": at_least(1),
            "rl.minibatch_size": at_least(1),
            "rl.epochs": at_least(1),
            "rl.temperature": positive,
            "rl.max_new_tokens": at_least(1),
            "rl.rewards": Check(bool, "must name at least one reward"),
            "rl.missing_eos_penalty": at_least(0),
            "rl.score_clip": at_least(0),
            "rl.kl_coef": at_least(0),
            "rl.kl_target": positive,
            "rl.kl_horizon": positive,
            "rl.clip_eps": between(0, 1),
            "rl.clip_eps_high": at_least(0),
            "rl.dual_clip": Check(lambda v: v == 0 or v > 1, "must be 0 (off) or > 1"),
            "rl.entropy_coef": at_least(0),
            "rl.gamma": between(0, 1),
            "rl.lam": between(0, 1),
            "rl.value_clip_eps": positive,
            "rl.value_coef": positive,
            "rl.value_lr": at_least(0),
            "rl.ptx_coef": at_least(0),
            "rl.ptx_max_length": at_least(2),
        },
    )


def prompt_group(rl: ml_collections.ConfigDict) -> int:
    """Rows that share one prompt forward pass: rl.n with rl.share_prompt_forward, else 1."""
    return rl.n if rl.share_prompt_forward else 1


def check_sizes(cfg: ml_collections.ConfigDict) -> None:
    """Cross-key checks the schema cannot express."""
    rl = cfg.rl
    rows = cfg.train.batch_size * rl.n
    if rows % rl.minibatch_size:
        raise JalignError(
            f"config key 'rl.minibatch_size'={rl.minibatch_size} must divide the rows per "
            f"iteration train.batch_size x rl.n = {rows}"
        )
    if rl.minibatch_size % cfg.train.grad_accum_steps:
        raise JalignError(
            f"config key 'train.grad_accum_steps'={cfg.train.grad_accum_steps} must divide "
            f"rl.minibatch_size={rl.minibatch_size}"
        )
    micro = rl.minibatch_size // cfg.train.grad_accum_steps
    if micro % prompt_group(rl):
        raise JalignError(
            f"config key 'rl.share_prompt_forward'=True needs whole groups of rl.n={rl.n} rows "
            f"in each micro-batch of rl.minibatch_size / train.grad_accum_steps = {micro} rows; "
            "allowed: a micro-batch that is a multiple of rl.n, or share_prompt_forward=False"
        )
    if rl.reward_weights and len(rl.reward_weights) != len(rl.rewards):
        raise JalignError(
            f"config key 'rl.reward_weights' has {len(rl.reward_weights)} weights for "
            f"{len(rl.rewards)} rewards; allowed: one weight per reward, or [] for all 1"
        )
    if rl.ptx_coef > 0 and not rl.ptx_data:
        raise JalignError(
            f"config key 'rl.ptx_coef'={rl.ptx_coef} needs rl.ptx_data; allowed: an SFT data "
            "path in rl.ptx_data, or ptx_coef=0"
        )
    if rl.estimator != "gae" and rl.n < 2:
        raise JalignError(
            f"config key 'rl.n'={rl.n}: estimator {rl.estimator!r} compares samples of the "
            "same prompt; allowed: n >= 2"
        )

"""Online RL: PPO with a value model and critic-free GRPO / Dr. GRPO / RLOO / REINFORCE++,
with rollouts from `jalign.sampling.generate` on the policy's live params.

    jalign ppo --config configs/ppo_demo.py
    jalign grpo --config configs/grpo_demo.py      # rl.estimator picks GRPO / RLOO / ...

Modules: `schema` (config), `rollout` (sampler output -> sequences), `rewards` (reward
sources and score shaping), `setup` (models and rewards from the config), `forward`
(completion log-probs / values), `advantages`, `losses` (the update steps' losses), `metrics`,
`loop` (the iteration and the run), `command` (load a config and run).
"""

from jalign.rl.command import load_rl_config, run_rl
from jalign.rl.loop import RLRun, train_rl

__all__ = ["RLRun", "load_rl_config", "run_rl", "train_rl"]

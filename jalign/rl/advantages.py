"""Per-token advantages (and, for PPO, value targets) of a scored rollout batch.

PPO (estimator "gae"), after Ziegler et al. 2019 / Ouyang et al. 2022:
    r_t = -beta KL_t + [t = last] score       (KL term only with kl_in = "reward")
    A, R = GAE(gamma, lambda) over completion tokens with the value model's V_t
    A <- whiten(A) over the batch's completion tokens (whiten_advantages)

Critic-free estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++; see `group_advantages`):
    A_t = group_advantage(score)_i - beta sum_{s >= t} KL_s     (KL term only with kl_in = "reward")
    A <- whiten(A) over the batch's completion tokens (whiten_advantages; REINFORCE++'s global
    normalisation of the token advantages, Hu 2025)

With kl_in = "loss" the KL is a loss term instead (`jalign.rl.losses`), beta is not in A.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jalign.losses import gae, group_advantages, kl_estimate, kl_penalized_rewards, masked_whiten


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
    estimator: str
    group_size: int
    kl_coef: float
    kl_in_reward: bool
    kl_estimator: str
    gamma: float
    lam: float
    whiten: bool


def compute_advantages(
    cfg: AdvantageConfig,
    scores: np.ndarray,
    logp: np.ndarray,
    ref_logp: np.ndarray,
    mask: np.ndarray,
    values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """scores [R]; logp, ref_logp, mask, values [R, N] -> (advantages [R, N], returns [R, N]
    for "gae" else None, per-token KL estimate [R, N]). All 0 where mask is 0. Compiled once per
    shape and config; the KL coefficient (which an adaptive controller changes) is an input."""
    beta = cfg.kl_coef if cfg.kl_in_reward else 0.0
    static = dataclasses.replace(cfg, kl_coef=0.0)
    out = _advantages(static, jnp.float32(beta), scores, logp, ref_logp, mask, values)
    as_host = lambda x: None if x is None else np.asarray(x, np.float32)  # noqa: E731
    return tuple(as_host(x) for x in out)


@functools.partial(jax.jit, static_argnames="cfg")
def _advantages(cfg: AdvantageConfig, beta, scores, logp, ref_logp, mask, values):
    mask = jnp.asarray(mask, jnp.float32)
    if cfg.estimator == "gae":
        rewards, kl = kl_penalized_rewards(scores, logp, ref_logp, mask, beta, cfg.kl_estimator)
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
    else:
        kl = kl_estimate(logp, ref_logp, cfg.kl_estimator) * mask
        kl_to_go, _ = gae(-beta * kl, jnp.zeros_like(kl), mask, 1.0, 1.0)
        per_sequence = group_advantages(scores, cfg.group_size, cfg.estimator)
        advantages = (per_sequence[:, None] * mask + kl_to_go) * mask
        returns = None
    if cfg.whiten:
        advantages = masked_whiten(advantages, mask)
    return advantages, returns, kl

"""Advantages and reward shaping for policy-gradient RL: GAE, masked whitening, group-relative
baselines (GRPO, Dr. GRPO, RLOO, REINFORCE++), score clipping / whitening and the missing-EOS
penalty."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jalign.errors import JalignError

GROUP_ADVANTAGE_MODES = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline")


def gae(
    rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float, lam: float
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016) over completion tokens.

    rewards, values, mask [B, T]; mask is 1 on one contiguous run of completion tokens per row
    (right padded). With V_{t+1} = 0 after the last real token (the episode ends there):

        delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lam A_{t+1},
        returns_t = A_t + V_t.

    Returns (advantages, returns), both 0 where mask is 0. Computed by a reverse `lax.scan`.
    """
    mask = jnp.asarray(mask, jnp.float32)
    rewards = jnp.asarray(rewards, jnp.float32) * mask
    values = jnp.asarray(values, jnp.float32) * mask

    def step(carry, inputs):
        next_value, next_advantage = carry
        r, v, m = inputs
        delta = r + gamma * next_value - v
        advantage = (delta + gamma * lam * next_advantage) * m
        return (v, advantage), advantage

    zeros = jnp.zeros(rewards.shape[0], jnp.float32)
    _, advantages = jax.lax.scan(step, (zeros, zeros), (rewards.T, values.T, mask.T), reverse=True)
    advantages = advantages.T
    return advantages, (advantages + values) * mask


def masked_whiten(
    values: jax.Array, mask: jax.Array, shift_mean: bool = True, eps: float = 1e-8
) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over the masked-in entries (unbiased variance, as TRL);
    with shift_mean=False the mean is added back (scale only). Masked-out entries become 0."""
    mask = jnp.asarray(mask, jnp.float32)
    values = jnp.asarray(values, jnp.float32)
    n = jnp.sum(mask)
    mean = jnp.sum(values * mask) / jnp.maximum(n, 1.0)
    var = jnp.sum(mask * (values - mean) ** 2) / jnp.maximum(n - 1.0, 1.0)
    whitened = (values - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def group_advantages(
    rewards: jax.Array,
    group_size: int,
    mode: str = "grpo",
    mask: jax.Array | None = None,
    eps: float = 1e-4,
) -> jax.Array:
    """Outcome advantages from G samples per prompt, no value model. rewards [N] with each
    prompt's G = group_size samples contiguous; mask [N] (0 = padding sample, ignored in every
    statistic, advantage 0). Statistics use the unbiased std (torch's default, as in TRL).

    - grpo: (r_i - mean_g) / (std_g + eps) (Shao et al. 2024, "DeepSeekMath").
    - dr_grpo: r_i - mean_g, no std scaling (Liu et al. 2025, "Understanding R1-Zero-Like
      Training").
    - rloo: r_i - (1 / (n_g - 1)) sum_{j != i} r_j, leave-one-out (Ahmadian et al. 2024,
      "Back to Basics"); 0 for a group with one valid sample.
    - reinforce_pp: (r_i - mean) / std over the whole batch (Hu 2025, "REINFORCE++").
    - reinforce_pp_baseline: r_i - mean_g, then whitened over the whole batch (Hu 2025).
    """
    if mode not in GROUP_ADVANTAGE_MODES:
        raise JalignError(
            f"group advantage mode {mode!r} is not known; allowed: {', '.join(GROUP_ADVANTAGE_MODES)}"
        )
    rewards = jnp.asarray(rewards, jnp.float32)
    if group_size < 1 or rewards.shape[0] % group_size:
        raise JalignError(
            f"group_size={group_size} does not divide the {rewards.shape[0]} rewards; "
            "allowed: a positive divisor of the number of samples"
        )
    mask = jnp.ones_like(rewards) if mask is None else jnp.asarray(mask, jnp.float32)
    if mode == "reinforce_pp":
        return masked_whiten(rewards, mask)
    r = rewards.reshape(-1, group_size)
    m = mask.reshape(-1, group_size)
    n = jnp.sum(m, axis=1, keepdims=True)
    total = jnp.sum(r * m, axis=1, keepdims=True)
    centered = r - total / jnp.maximum(n, 1.0)
    if mode == "grpo":
        std = jnp.sqrt(jnp.sum(m * centered**2, axis=1, keepdims=True) / jnp.maximum(n - 1, 1.0))
        advantages = centered / (std + eps)
    elif mode == "rloo":
        advantages = jnp.where(n > 1, r - (total - r) / jnp.maximum(n - 1.0, 1.0), 0.0)
    else:  # dr_grpo, reinforce_pp_baseline
        advantages = centered
    advantages = (advantages * m).reshape(-1)
    if mode == "reinforce_pp_baseline":
        return masked_whiten(advantages, mask)
    return advantages


def normalize_scores(
    scores: jax.Array,
    mask: jax.Array | None = None,
    clip: float | None = None,
    whiten: bool = False,
    shift_mean: bool = True,
) -> jax.Array:
    """Sequence scores [N] clipped to [-clip, clip] (OpenRLHF's reward clipping), then, with
    whiten=True, whitened over the masked-in entries (`masked_whiten`; shift_mean=False keeps
    the mean, as TRL's whiten_rewards)."""
    scores = jnp.asarray(scores, jnp.float32)
    mask = jnp.ones_like(scores) if mask is None else jnp.asarray(mask, jnp.float32)
    if clip is not None:
        scores = jnp.clip(scores, -clip, clip)
    return masked_whiten(scores, mask, shift_mean) if whiten else scores * mask


def penalize_missing_eos(
    scores: jax.Array,
    completion_ids: jax.Array,
    completion_mask: jax.Array,
    eos_token_id: int,
    penalty: float,
) -> jax.Array:
    """scores [B] minus `penalty` for each completion [B, T] that has no EOS among its masked-in
    tokens (truncated generations; TRL's missing_eos_penalty, after Huang et al. 2024, "The N+
    Implementation Details of RLHF with PPO")."""
    has_eos = jnp.any((completion_ids == eos_token_id) & (completion_mask > 0), axis=1)
    return jnp.asarray(scores, jnp.float32) - penalty * (1.0 - has_eos.astype(jnp.float32))

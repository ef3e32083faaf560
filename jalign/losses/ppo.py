"""PPO's clipped policy and value losses (per token) and the explained-variance diagnostic."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jalign.losses.logprobs import masked_mean

_MAX_LOG_RATIO = 20.0  # the ratio exp(log pi - log pi_old) is formed from a clipped log-ratio


def ppo_policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip_eps_low: float = 0.2,
    clip_eps_high: float | None = None,
    dual_clip: float | None = None,
) -> tuple[jax.Array, dict]:
    """Per-token clipped surrogate (Schulman et al. 2017, "Proximal Policy Optimization"):

        rho = exp(log pi - log pi_old),
        l = max(-A rho, -A clip(rho, 1 - eps_low, 1 + eps_high)),

    eps_high defaults to eps_low; eps_high > eps_low is DAPO's clip-higher (Yu et al. 2025).
    dual_clip c > 1 (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL")
    also bounds the loss of negative advantages: l = min(l, -c A) where A < 0. The log-ratio
    is clipped to [-20, 20] before exponentiating.

    logp, old_logp, advantages, mask [B, T]. Returns (per-token loss [B, T] (0 where mask is
    0; reduce it with `aggregate`), metrics): approxkl = 0.5 mean (log rho)^2, clipfrac =
    fraction of tokens where the clipped term is the larger, dual_clipfrac (with dual_clip).
    """
    mask = jnp.asarray(mask, jnp.float32)
    advantages = jnp.asarray(advantages, jnp.float32)
    eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    log_ratio = jnp.asarray(logp, jnp.float32) - jnp.asarray(old_logp, jnp.float32)
    ratio = jnp.exp(jnp.clip(log_ratio, -_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_eps_low, 1.0 + eps_high)
    loss = jnp.maximum(unclipped, clipped)
    metrics = {
        "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
        "clipfrac": masked_mean((clipped > unclipped).astype(jnp.float32), mask),
    }
    if dual_clip is not None:
        bound = -dual_clip * advantages
        dual_active = (advantages < 0) & (bound < loss)
        loss = jnp.where(dual_active, bound, loss)
        metrics["dual_clipfrac"] = masked_mean(dual_active.astype(jnp.float32), mask)
    return loss * mask, metrics


def ppo_value_loss(
    values: jax.Array,
    old_values: jax.Array,
    returns: jax.Array,
    mask: jax.Array,
    clip_eps: float = 0.2,
) -> tuple[jax.Array, dict]:
    """Per-token clipped value loss (PPO as in OpenAI baselines; Ziegler et al. 2019):

        V_clip = V_old + clip(V - V_old, -eps, eps),
        l = 0.5 max((V - R)^2, (V_clip - R)^2).

    Returns (per-token loss [B, T], 0 where mask is 0; metrics: value_clipfrac = fraction of
    tokens where the clipped error is the larger).
    """
    mask = jnp.asarray(mask, jnp.float32)
    values = jnp.asarray(values, jnp.float32)
    old_values = jnp.asarray(old_values, jnp.float32)
    returns = jnp.asarray(returns, jnp.float32)
    clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * jnp.maximum(error, clipped_error)
    clipfrac = masked_mean((clipped_error > error).astype(jnp.float32), mask)
    return loss * mask, {"value_clipfrac": clipfrac}


def explained_variance(predictions: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """1 - Var[targets - predictions] / Var[targets] over masked-in entries: 1 = perfect value
    predictions, 0 = no better than a constant, < 0 = worse. 0 when the targets are constant."""
    mask = jnp.asarray(mask, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    residual = targets - jnp.asarray(predictions, jnp.float32)

    def variance(x: jax.Array) -> jax.Array:
        return masked_mean((x - masked_mean(x, mask)) ** 2, mask)

    var_targets = variance(targets)
    safe = jnp.where(var_targets > 0, var_targets, 1.0)
    return jnp.where(var_targets > 0, 1.0 - variance(residual) / safe, 0.0)

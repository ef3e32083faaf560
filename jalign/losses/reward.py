"""Bradley-Terry reward-model loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _weighted_mean_std(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / n
    return mean, jnp.sqrt(jnp.sum(w * (x - mean) ** 2) / n)


def bradley_terry_loss(
    chosen: jax.Array,
    rejected: jax.Array,
    margin: jax.Array | float = 0.0,
    center_coef: float = 0.0,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """L = sum_i w_i [-log sigmoid(r_c,i - r_r,i - m_i) + c (r_c,i + r_r,i)^2] / sum_i w_i.

    chosen, rejected [B] are the rewards of each pair; margin m (scalar or [B]) is the required
    gap of Llama 2 (Touvron et al. 2023); c is the centring penalty of Eisenstein et al. 2023
    ("Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate Reward Hacking"),
    which anchors rewards around 0; w = example_mask (padding pairs 0). The pairwise likelihood
    is Bradley & Terry (1952) as used for RLHF reward models (Christiano et al. 2017; Ouyang et
    al. 2022). Returns (loss, metrics, weight = number of pairs).
    """
    chosen = chosen.astype(jnp.float32)
    rejected = rejected.astype(jnp.float32)
    w = jnp.ones_like(chosen) if example_mask is None else example_mask.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    diff = chosen - rejected
    per_pair = -jax.nn.log_sigmoid(diff - margin) + center_coef * (chosen + rejected) ** 2
    chosen_mean, chosen_std = _weighted_mean_std(chosen, w)
    rejected_mean, rejected_std = _weighted_mean_std(rejected, w)
    metrics = {
        "accuracy": jnp.sum(w * (diff > 0)) / n,
        "margin": jnp.sum(w * diff) / n,
        "rewards/chosen_mean": chosen_mean,
        "rewards/rejected_mean": rejected_mean,
        "rewards/chosen_std": chosen_std,
        "rewards/rejected_std": rejected_std,
    }
    return jnp.sum(w * per_pair) / n, metrics, jnp.sum(w)

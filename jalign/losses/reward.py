"""Bradley-Terry reward-model loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _weighted_std(x: jax.Array, w: jax.Array) -> jax.Array:
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / n
    return jnp.sqrt(jnp.sum(w * (x - mean) ** 2) / n)


def bradley_terry_loss(
    chosen: jax.Array,
    rejected: jax.Array,
    margin: jax.Array | float = 0.0,
    center_coef: float = 0.0,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """L = mean_i [ -log sigmoid(r_c,i - r_r,i - m_i) + c (r_c,i + r_r,i)^2 ].

    The Bradley-Terry (1952) pairwise likelihood as used for RLHF reward models (Christiano et
    al. 2017; Ouyang et al. 2022), with the optional margin m of Llama 2 (Touvron et al. 2023) and
    the centring penalty c of Eisenstein et al. 2023 ("Helping or Herding?"), which keeps the
    reward's scale anchored at 0. Returns (loss, metrics, weight = number of pairs).
    """
    w = jnp.ones_like(chosen) if example_mask is None else example_mask.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    diff = chosen - rejected
    per_pair = -jax.nn.log_sigmoid(diff - margin) + center_coef * (chosen + rejected) ** 2
    metrics = {
        "accuracy": jnp.sum(w * (diff > 0)) / n,
        "margin": jnp.sum(w * diff) / n,
        "rewards/chosen_mean": jnp.sum(w * chosen) / n,
        "rewards/rejected_mean": jnp.sum(w * rejected) / n,
        "rewards/chosen_std": _weighted_std(chosen, w),
        "rewards/rejected_std": _weighted_std(rejected, w),
    }
    return jnp.sum(w * per_pair) / n, metrics, jnp.sum(w)

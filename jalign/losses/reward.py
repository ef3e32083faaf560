"""Bradley-Terry reward-model losses: over pairs and over rankings of k responses."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jalign.losses.ranking import best_and_worst, ranking_comparisons


def _weighted_mean_std(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(x * w) / n
    return mean, jnp.sqrt(jnp.sum(w * (x - mean) ** 2) / n)


def ranked_bradley_terry_loss(
    rewards: jax.Array,
    scores: jax.Array,
    margin: jax.Array | float = 0.0,
    center_coef: float = 0.0,
    example_mask: jax.Array | None = None,
    response_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """Bradley-Terry over every comparison a ranking of k responses makes:

        C_b = {(i, j) : s_b,i > s_b,j, both real}       row b's comparisons (ties make none)
        L = sum_b w_b sum_{(i, j) in C_b} [-log sigmoid(r_b,i - r_b,j - m_b)
                                           + c (r_b,i + r_b,j)^2] / sum_b w_b |C_b|

    rewards, scores [B, k] are each response's reward and its label (higher is preferred);
    margin m (scalar or [B]) is the required gap of Llama 2 (Touvron et al. 2023); c is the
    centring penalty of Eisenstein et al. 2023 ("Helping or Herding? Reward Model Ensembles
    Mitigate but do not Eliminate Reward Hacking"), which anchors rewards around 0;
    w = example_mask (padding rows 0); response_mask [B, k] marks the real responses of
    rankings padded to k (see `jalign.losses.ranking`). The pairwise likelihood is Bradley &
    Terry (1952) as used for RLHF reward models (Christiano et al. 2017); training on all
    k(k-1)/2 comparisons of a prompt in one batch element is InstructGPT's (Ouyang et al. 2022,
    sec. 3.5): one forward pass per response instead of one per pair, and no response seen in
    several steps of an epoch. Every comparison weighs the same. Returns (loss, metrics,
    weight = number of comparisons); "chosen" / "rejected" metrics are the rewards of each
    row's first highest-scored / last lowest-scored real response.
    """
    rewards = rewards.astype(jnp.float32)
    scores = scores.astype(jnp.float32)
    w = jnp.ones(rewards.shape[:1]) if example_mask is None else example_mask.astype(jnp.float32)
    margin = jnp.broadcast_to(jnp.asarray(margin, jnp.float32), w.shape)[:, None, None]
    compared = ranking_comparisons(scores, response_mask) * w[:, None, None]
    diff = rewards[:, :, None] - rewards[:, None, :]
    total = rewards[:, :, None] + rewards[:, None, :]
    per_comparison = -jax.nn.log_sigmoid(diff - margin) + center_coef * total**2
    count = jnp.sum(compared)
    n = jnp.maximum(count, 1.0)
    best, worst = best_and_worst(scores, response_mask)
    chosen = jnp.take_along_axis(rewards, best[:, None], axis=1)[:, 0]
    rejected = jnp.take_along_axis(rewards, worst[:, None], axis=1)[:, 0]
    chosen_mean, chosen_std = _weighted_mean_std(chosen, w)
    rejected_mean, rejected_std = _weighted_mean_std(rejected, w)
    metrics = {
        "accuracy": jnp.sum(compared * (diff > 0)) / n,
        "margin": jnp.sum(compared * diff) / n,
        "rewards/chosen_mean": chosen_mean,
        "rewards/rejected_mean": rejected_mean,
        "rewards/chosen_std": chosen_std,
        "rewards/rejected_std": rejected_std,
    }
    return jnp.sum(compared * per_comparison) / n, metrics, count


def bradley_terry_loss(
    chosen: jax.Array,
    rejected: jax.Array,
    margin: jax.Array | float = 0.0,
    center_coef: float = 0.0,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """L = sum_i w_i [-log sigmoid(r_c,i - r_r,i - m_i) + c (r_c,i + r_r,i)^2] / sum_i w_i:
    `ranked_bradley_terry_loss` of pairs (chosen [B] ranked above rejected [B]), where the
    margin, the centring term and the returned weight (number of pairs) are explained."""
    return ranked_bradley_terry_loss(
        *pairs_as_rankings(chosen, rejected), margin, center_coef, example_mask
    )


def pairs_as_rankings(chosen: jax.Array, rejected: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Rewards of pairs [B] as rankings of k = 2: (rewards [B, 2], scores [B, 2] = (1, 0))."""
    rewards = jnp.stack([chosen, rejected], axis=1)
    return rewards, jnp.broadcast_to(jnp.asarray([1.0, 0.0], rewards.dtype), rewards.shape)

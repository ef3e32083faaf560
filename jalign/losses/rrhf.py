"""RRHF: rank k candidate responses by a reward and fine-tune on the best one."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jalign.losses.ranking import ranking_comparisons


def rrhf_loss(
    logps_normalised: jax.Array,
    scores: jax.Array,
    best_nll: jax.Array,
    rank_weight: float = 1.0,
    example_mask: jax.Array | None = None,
    response_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """RRHF loss (Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with Human
    Feedback without tears").

    logps_normalised [B, k]: length-normalised log-probs p_j = log pi(y_j | x) / |y_j| of k
    candidates; scores [B, k]: their rewards s_j; best_nll [B]: the NLL (cross-entropy) of the
    highest-scoring candidate; example_mask [B] (0 = padding row); response_mask [B, k] (0 = a
    padding response of a ranking padded to k, which no comparison involves). Per row,

        L_rank = sum_{j, l : s_j < s_l} max(0, p_j - p_l),   L = rank_weight L_rank + best_nll

    averaged over rows. Returns (loss, metrics, weight = number of rows).
    """
    p = jnp.asarray(logps_normalised, jnp.float32)
    s = jnp.asarray(scores, jnp.float32)
    w = jnp.ones(p.shape[0], jnp.float32) if example_mask is None else example_mask
    w = jnp.asarray(w, jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    worse_than = ranking_comparisons(s, response_mask).transpose(0, 2, 1)  # [B, j, l]: s_j < s_l
    rank = jnp.sum(worse_than * jax.nn.relu(p[:, :, None] - p[:, None, :]), axis=(1, 2))
    nll = jnp.asarray(best_nll, jnp.float32)
    metrics = {"rank_loss": jnp.sum(w * rank) / n, "nll_loss": jnp.sum(w * nll) / n}
    return jnp.sum(w * (rank_weight * rank + nll)) / n, metrics, jnp.sum(w)

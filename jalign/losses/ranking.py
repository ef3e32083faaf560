"""What a ranking of k scored responses says, as arrays: its comparisons and its ends.

Rankings of different sizes share a batch by padding to k responses; `response_mask` [B, k]
(1 = a real response, 0 = padding) keeps the padding out of every comparison and of the
best / worst picks. None means every response is real.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ranking_comparisons(scores: jax.Array, response_mask: jax.Array | None = None) -> jax.Array:
    """float32 [B, k, k]: entry (b, i, j) is 1 iff s_b,i > s_b,j and both responses are real
    (ties compare nothing)."""
    scores = scores.astype(jnp.float32)
    compared = (scores[:, :, None] > scores[:, None, :]).astype(jnp.float32)
    if response_mask is None:
        return compared
    m = response_mask.astype(jnp.float32)
    return compared * m[:, :, None] * m[:, None, :]


def best_and_worst(
    scores: jax.Array, response_mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """int [B] indices of each row's first highest-scored and last lowest-scored real
    response."""
    scores = scores.astype(jnp.float32)
    if response_mask is None:
        high = low = scores
    else:
        real = response_mask > 0
        high = jnp.where(real, scores, -jnp.inf)
        low = jnp.where(real, scores, jnp.inf)
    k = scores.shape[1]
    return jnp.argmax(high, axis=1), k - 1 - jnp.argmin(low[:, ::-1], axis=1)

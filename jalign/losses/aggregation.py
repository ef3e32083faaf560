"""Reduce a per-token loss [B, T] to a scalar, the way a policy-gradient objective asks for.

Each mode returns (value, weight): weight is the number of units the value averages over (target
tokens or sequences), so gradient accumulation that averages micro-batches weighted by it gives
the large-batch value exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jalign.errors import JalignError
from jalign.losses.logprobs import masked_sum

AGGREGATION_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)


def aggregate(
    per_token: jax.Array, mask: jax.Array, mode: str, max_length: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Masked reduction of per_token [B, T] (mask [B, T], 1 = counted) -> (value, weight).

    With x_it the per-token values, m_it the mask, |o_i| = sum_t m_it and N the number of rows
    that have at least one masked-in token (rows without any are ignored, never NaN):

    - ``token-mean``: sum_it m x / sum_it m. Every token weighs the same, so a long sequence
      weighs |o_i| times a one-token answer (DAPO, Yu et al. 2025). weight = sum_it m.
    - ``seq-mean-token-mean``: (1/N) sum_i (sum_t m x / |o_i|). Every sequence weighs the same,
      so each token of a long sequence weighs less than one of a short sequence (GRPO, Shao et
      al. 2024). weight = N.
    - ``seq-mean-token-sum``: (1/N) sum_i sum_t m x. Every token weighs the same within the
      batch, but the scale grows with sequence length. weight = N.
    - ``seq-mean-token-sum-norm``: (1/N) sum_i sum_t m x / L, with L a constant (`max_length`,
      default T): Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training") removes
      the 1/|o_i| length bias; every token weighs the same and the scale does not depend on
      response lengths. weight = N.
    """
    if mode not in AGGREGATION_MODES:
        raise JalignError(
            f"loss aggregation mode {mode!r} is not known; allowed: {', '.join(AGGREGATION_MODES)}"
        )
    if max_length is not None and max_length <= 0:
        raise JalignError(f"loss aggregation max_length={max_length}; allowed: an integer > 0")
    mask = mask.astype(jnp.float32)
    per_token = per_token.astype(jnp.float32)
    if mode == "token-mean":
        weight = jnp.sum(mask)
        return masked_sum(per_token, mask) / jnp.maximum(weight, 1.0), weight
    lengths = jnp.sum(mask, axis=1)
    sums = masked_sum(per_token, mask, axis=1)
    if mode == "seq-mean-token-mean":
        per_seq = sums / jnp.maximum(lengths, 1.0)
    elif mode == "seq-mean-token-sum":
        per_seq = sums
    else:
        per_seq = sums / float(mask.shape[1] if max_length is None else max_length)
    has_tokens = (lengths > 0).astype(jnp.float32)
    weight = jnp.sum(has_tokens)
    return jnp.sum(per_seq * has_tokens) / jnp.maximum(weight, 1.0), weight

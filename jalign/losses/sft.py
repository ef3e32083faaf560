"""Supervised fine-tuning cross-entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jalign.errors import JalignError
from jalign.losses.aggregation import aggregate
from jalign.losses.logprobs import masked_mean

SFT_NORMALIZATIONS = ("token", "sequence")
_AGGREGATION_OF = {"token": "token-mean", "sequence": "seq-mean-token-mean"}


def sft_loss(
    logps: jax.Array,
    mask: jax.Array,
    normalization: str = "token",
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """Negative log-likelihood of the target tokens (maximum likelihood; Radford et al. 2018).

    logps [B, N] are token log-probs and mask [B, N] marks the targets among them, in one
    alignment (the columns of `shifted_logprobs`, or a window of target columns), example_mask
    [B] (optional) drops padding rows.

    token:    L = -sum_it m_it log p_it / sum_it m_it       (every target token weighs the same)
    sequence: L = -(1/N) sum_i sum_t m_it log p_it / sum_t m_it   (every sequence weighs the
              same; N counts rows with at least one target)

    Returns (loss, metrics, weight): weight is the number of units averaged over (target tokens
    or sequences) for exact gradient accumulation; metrics["nll"] is the per-token NLL.
    """
    if normalization not in _AGGREGATION_OF:
        raise JalignError(
            f"sft.loss_normalization={normalization!r}; allowed: {', '.join(SFT_NORMALIZATIONS)}"
        )
    mask = mask.astype(jnp.float32)
    if example_mask is not None:
        mask = mask * example_mask.astype(jnp.float32)[:, None]
    loss, weight = aggregate(-logps, mask, _AGGREGATION_OF[normalization])
    return loss, {"nll": -masked_mean(logps, mask)}, weight

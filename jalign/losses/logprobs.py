"""Token log-probabilities, aligned with `loss_mask`: entry t is log p(input_ids[t] | <t).

The model's logits at t predict token t+1, so entry t comes from logits[:, t-1]; entry 0 (no
context) is 0 and is never a target. All results are float32.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def token_logprobs(logits: jax.Array, targets: jax.Array, temperature: float = 1.0) -> jax.Array:
    """log softmax(logits / temperature)[target], in float32. logits [..., V], targets [...]."""
    logits = logits.astype(jnp.float32) / temperature
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def shifted_logprobs(
    logits: jax.Array, input_ids: jax.Array, temperature: float = 1.0
) -> jax.Array:
    """[B, T]: entry t = log p(input_ids[t] | input_ids[<t]); entry 0 = 0."""
    lp = token_logprobs(logits[:, :-1], input_ids[:, 1:], temperature)
    return jnp.pad(lp, ((0, 0), (1, 0)))


def chunked_shifted_logprobs(
    hidden: jax.Array,
    unembed: Callable[[jax.Array], jax.Array],
    input_ids: jax.Array,
    chunk_size: int,
    temperature: float = 1.0,
) -> jax.Array:
    """`shifted_logprobs(unembed(hidden), input_ids)` without a [B, T, V] float32 tensor.

    The sequence is cut into chunks of `chunk_size` positions; each chunk's logits are made,
    reduced to one logprob per position and dropped (`jax.checkpoint` recomputes them in the
    backward pass), so peak memory holds one [B, chunk, V] block.
    """
    b, t, d = hidden.shape
    n_chunks = -(-(t - 1) // chunk_size)
    pad = n_chunks * chunk_size - (t - 1)
    h = jnp.pad(hidden[:, :-1], ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(input_ids[:, 1:], ((0, 0), (0, pad)))
    h = h.reshape(b, n_chunks, chunk_size, d).swapaxes(0, 1)
    targets = targets.reshape(b, n_chunks, chunk_size).swapaxes(0, 1)

    @jax.checkpoint
    def one_chunk(args):
        h_chunk, t_chunk = args
        return token_logprobs(unembed(h_chunk), t_chunk, temperature)

    lp = jax.lax.map(one_chunk, (h, targets)).swapaxes(0, 1).reshape(b, -1)[:, : t - 1]
    return jnp.pad(lp, ((0, 0), (1, 0)))


def token_entropy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Entropy H = -sum_v p_v log p_v of softmax(logits / temperature), per position."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def masked_sum(values: jax.Array, mask: jax.Array, axis: int | None = None) -> jax.Array:
    return jnp.sum(values * mask, axis=axis)


def masked_mean(values: jax.Array, mask: jax.Array, axis: int | None = None) -> jax.Array:
    """sum(values * mask) / max(sum(mask), 1): 0 (not NaN) where nothing is masked in."""
    return jnp.sum(values * mask, axis=axis) / jnp.maximum(jnp.sum(mask, axis=axis), 1.0)

"""Token log-probabilities and entropies, plain or chunked, and the shift that aligns them with
`loss_mask`: entry t of a *shifted* result is about log p(input_ids[t] | input_ids[<t]).

The model's logits at t predict token t+1, so entry t comes from logits[:, t-1]; entry 0 (no
context) is 0 and is never a target. All results are float32.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jalign.errors import JalignError


def token_logprobs(
    logits: jax.Array, targets: jax.Array, temperature: float = 1.0, with_hits: bool = False
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """log softmax(logits / temperature)[target], float32. logits [..., V], targets [...].

    log p = z_target - m - log sum_v exp(z_v - m), with m = max_v z_v (held constant for the
    gradient). The target logit is read through a one-hot mask rather than a gather, so the
    backward pass is one fused elementwise pass (softmax - one-hot) instead of a scatter into a
    [..., V] zero tensor. With `with_hits`, also returns whether the target logit is the
    largest (ties count as hits): the token accuracy from the same pass over the logits.
    """
    logits = logits.astype(jnp.float32) / temperature
    top = jnp.max(logits, axis=-1, keepdims=True)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    log_norm = jnp.log(jnp.sum(jnp.exp(logits - shift), axis=-1)) + shift[..., 0]
    vocab = jax.lax.broadcasted_iota(targets.dtype, logits.shape, logits.ndim - 1)
    picked = jnp.sum(jnp.where(vocab == targets[..., None], logits, 0.0), axis=-1)
    logps = picked - log_norm
    return (logps, picked >= top[..., 0]) if with_hits else logps


def token_entropy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """H = -sum_v p_v log p_v of p = softmax(logits / temperature), per position [...].

    Vocabulary entries with p_v = 0 (e.g. logits masked to -inf) contribute 0, not NaN.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    p = jnp.exp(logp)
    return -jnp.sum(p * jnp.where(p > 0, logp, 0.0), axis=-1)


def shifted_logprobs(
    logits: jax.Array, input_ids: jax.Array, temperature: float = 1.0
) -> jax.Array:
    """[B, T]: entry t = log p(input_ids[t] | input_ids[<t]) from logits[:, t-1]; entry 0 = 0.

    Multiply by `loss_mask` (same alignment) to keep only the targets. Every position of
    `logits` is reduced (the last one against a dummy target, then dropped), so the [B, T, V]
    logits are never sliced or copied, nor their gradient padded.
    """
    next_ids = jnp.concatenate([input_ids[:, 1:], input_ids[:, :1]], axis=1)
    return jnp.pad(token_logprobs(logits, next_ids, temperature)[:, :-1], ((0, 0), (1, 0)))


def shifted_entropy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """[B, T]: entry t = entropy of the distribution that predicted input_ids[t]; entry 0 = 0."""
    return jnp.pad(token_entropy(logits, temperature)[:, :-1], ((0, 0), (1, 0)))


def chunked_token_logprobs(
    hidden: jax.Array,
    unembed: Callable[[jax.Array], jax.Array],
    targets: jax.Array,
    chunk_size: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """`token_logprobs(unembed(hidden), targets)` without a [B, T, V] float32 tensor.

    hidden [B, T, D] and targets [B, T] are already aligned (hidden[:, t] predicts
    targets[:, t]); `unembed` maps [B, C, D] -> logits [B, C, V]. The T positions are cut into
    chunks of `chunk_size` (the last one zero-padded); `jax.lax.map` makes each chunk's logits,
    reduces them to one logprob (and, with `with_entropy`, one entropy) per position and drops
    them, and `jax.checkpoint` recomputes them in the backward pass, so peak memory holds one
    [B, chunk_size, V] block in either direction. Returns logps [B, T], or (logps, entropy).
    """
    if chunk_size <= 0:
        raise JalignError(f"logprob chunk_size={chunk_size}; allowed: an integer > 0")
    b, t, d = hidden.shape
    n_chunks = max(-(-t // chunk_size), 1)
    pad = n_chunks * chunk_size - t
    h = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    ids = jnp.pad(targets, ((0, 0), (0, pad)))
    h = h.reshape(b, n_chunks, chunk_size, d).swapaxes(0, 1)
    ids = ids.reshape(b, n_chunks, chunk_size).swapaxes(0, 1)

    @jax.checkpoint
    def one_chunk(args: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, ...]:
        h_chunk, ids_chunk = args
        logits = unembed(h_chunk)
        lp = token_logprobs(logits, ids_chunk, temperature)
        return (lp, token_entropy(logits, temperature)) if with_entropy else (lp,)

    outs = jax.lax.map(one_chunk, (h, ids))
    outs = tuple(o.swapaxes(0, 1).reshape(b, -1)[:, :t] for o in outs)
    return outs if with_entropy else outs[0]


def masked_sum(values: jax.Array, mask: jax.Array, axis: int | None = None) -> jax.Array:
    """sum(values * mask) over `axis` (all axes when None); e.g. axis=1 gives sequence logps.

    Entries where mask == 0 are dropped, not multiplied: an inf or NaN there (a padding
    position) never reaches the result or its gradient.
    """
    return jnp.sum(jnp.where(mask != 0, values, 0.0) * mask, axis=axis)


def masked_mean(values: jax.Array, mask: jax.Array, axis: int | None = None) -> jax.Array:
    """masked_sum / max(sum(mask), 1): 0 (not NaN) where nothing is masked in."""
    return masked_sum(values, mask, axis) / jnp.maximum(jnp.sum(mask, axis=axis), 1.0)

"""The distribution the sampler draws from, shared by the decoder and by `sampling_logprobs`.

One function, `log_probs`, maps logits to log-probabilities of the truncated, temperature-scaled
distribution described in `jalign.sampling.params`; the decoder samples from it and the RL side
recomputes the same numbers from teacher-forced logits with `sampling_logprobs`.

The settings are split in two so that a compiled decoder serves many settings: `Truncation`
(what changes the program: greedy or not, top-k, whether top-p / min-p apply) is static, while
`Knobs` (temperature, top_p, min_p values) are traced scalars.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jalign.sampling.params import SamplingParams


@dataclasses.dataclass(frozen=True)
class Truncation:
    """The static part of the sampling distribution (part of the decoder's compile key)."""

    greedy: bool
    top_k: int
    use_top_p: bool
    use_min_p: bool

    @classmethod
    def of(cls, params: SamplingParams) -> Truncation:
        return cls(
            greedy=params.greedy,
            top_k=params.top_k,
            use_top_p=params.top_p < 1,
            use_min_p=params.min_p > 0,
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Knobs:
    """The traced part of the sampling distribution: float32 scalars."""

    temperature: jax.Array
    top_p: jax.Array
    min_p: jax.Array

    @classmethod
    def of(cls, params: SamplingParams) -> Knobs:
        scalar = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return cls(scalar(params.temperature), scalar(params.top_p), scalar(params.min_p))


def _keep_at_least(z: jax.Array, threshold: jax.Array) -> jax.Array:
    """Mask (to -inf) every entry of z below the per-row threshold [..., 1]."""
    return jnp.where(z >= threshold, z, -jnp.inf)


def log_probs(logits: jax.Array, truncation: Truncation, knobs: Knobs) -> jax.Array:
    """float32 log-probabilities [..., V] of the distribution sampled from (-inf off its support).

    Greedy: log_softmax(logits). Otherwise z = logits / temperature, then top-k, top-p and
    min-p truncation, then log_softmax over the kept tokens.
    """
    z = logits.astype(jnp.float32)
    if truncation.greedy:
        return jax.nn.log_softmax(z, axis=-1)
    z = z / knobs.temperature
    vocab = z.shape[-1]
    if 0 < truncation.top_k < vocab:
        kth = jax.lax.top_k(z, truncation.top_k)[0][..., -1:]
        z = _keep_at_least(z, kth)
    if truncation.use_top_p:
        descending = -jnp.sort(-z, axis=-1)
        probs = jax.nn.softmax(descending, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = jnp.sum(mass_before < knobs.top_p, axis=-1, keepdims=True)
        z = _keep_at_least(z, jnp.take_along_axis(descending, kept - 1, axis=-1))
    if truncation.use_min_p:
        # p_i >= min_p * max_j p_j  <=>  z_i >= max_j z_j + log(min_p)
        z = _keep_at_least(z, jnp.max(z, axis=-1, keepdims=True) + jnp.log(knobs.min_p))
    return jax.nn.log_softmax(z, axis=-1)


def first_argmax(x: jax.Array) -> jax.Array:
    """int32 index of the first maximum over the last axis (`jnp.argmax` without NaNs), as a max
    and a min reduction: XLA on CPU runs argmax's paired (value, index) reduction about 10x
    slower, which costs a [rows, vocab] decode step more than its last matmul."""
    best = jnp.max(x, axis=-1, keepdims=True)
    index = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    return jnp.min(jnp.where(x == best, index, x.shape[-1]), axis=-1)


def draw(logp: jax.Array, key: jax.Array) -> jax.Array:
    """One token per row from log-probabilities [..., V]: the Gumbel-max trick,
    argmax(logp + Gumbel noise), i.e. exactly `jax.random.categorical(key, logp)`."""
    return first_argmax(logp + jax.random.gumbel(key, logp.shape, logp.dtype))


def sampling_logprobs(logits: jax.Array, tokens: jax.Array, params: SamplingParams) -> jax.Array:
    """Recompute what the sampler reported: log-prob of `tokens` [...] under the sampling
    distribution built from `logits` [..., V] (teacher-forced: logits[..., t, :] are the logits
    the token tokens[..., t] was drawn from). float32 [...]; -inf for a token outside the
    truncated support. Pure and jit-able (`params` is static)."""
    logp = log_probs(logits, Truncation.of(params), Knobs.of(params))
    return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]

"""Building blocks of the decoder: norms, rotary embeddings, attention with a KV cache, MLP, block.

Attention masking is expressed with two per-token arrays instead of a dense mask:
`segment_ids` (0 = padding, 1..k = packed examples) and `positions`. Key j is visible to query i
iff both carry the same non-zero segment id, `pos_j <= pos_i` and, for sliding-window layers,
`pos_i - pos_j < window`. The same rule serves right- and left-padded batches, packed rows and
decoding against a KV cache.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jalign.models.config import ModelConfig

_MASKED = -1e30  # written (not added) over masked scores, so fully masked rows stay finite


def _activation(name: str, x: jax.Array) -> jax.Array:
    if name == "silu":
        return jax.nn.silu(x)
    if name == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    if name == "gelu_exact":
        return jax.nn.gelu(x, approximate=False)
    if name == "relu":
        return jax.nn.relu(x)
    raise ValueError(f"unknown activation {name!r}")


class Norm(nnx.Module):
    """RMSNorm (Zhang & Sennrich 2019) or LayerNorm (Ba et al. 2016), computed in float32.

    RMSNorm: y = x / sqrt(mean(x^2) + eps) * (offset + scale); Gemma stores `scale` as w - 1
    (offset 1). LayerNorm: y = (x - mean) / sqrt(var + eps) * scale + bias.
    """

    def __init__(self, dim: int, cfg: ModelConfig, *, rngs: nnx.Rngs):
        del rngs
        self.kind = cfg.norm_kind
        self.eps = cfg.norm_eps
        self.offset = cfg.norm_scale_offset
        param_dtype = jnp.dtype(cfg.param_dtype)
        init_scale = 0.0 if self.offset else 1.0
        self.scale = nnx.Param(jnp.full((dim,), init_scale, param_dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), param_dtype)) if self.kind == "layernorm" else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(jnp.float32)
        if self.kind == "layernorm":
            h = h - h.mean(-1, keepdims=True)
        h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
        scale = self.scale[...].astype(jnp.float32) + self.offset
        if self.offset:  # Gemma multiplies in float32, then casts
            return (h * scale).astype(x.dtype)
        if self.bias is not None:
            return (h * scale + self.bias[...].astype(jnp.float32)).astype(x.dtype)
        return scale.astype(x.dtype) * h.astype(x.dtype)


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., K] @ kernel [K, N], with a backward pass written out for the CPU.

    Gradients: dx = g kernel^T and dkernel = sum over tokens of x^T g, contracting the leading
    (token) axes of both operands. Left to autodiff, XLA on CPU computed dkernel from a copy of
    g in transposed [N, tokens] layout, written with strided stores: for the demo-size model's
    tied LM head (g = [1024, 8192] logits gradient) that copy alone took 32 ms of a 340 ms SFT
    step, and the logits gradient was recomputed for each of the two products. Here g is
    materialised once, row-major, and both products read it as it is.
    """
    return jnp.dot(x, kernel)


def _dense_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return jnp.dot(x, kernel), (x, kernel)


def _dense_bwd(residuals: tuple[jax.Array, jax.Array], g: jax.Array):
    x, kernel = residuals
    dx = jnp.einsum("...n,kn->...k", g, kernel).astype(x.dtype)
    tokens_x = x.reshape(-1, x.shape[-1])
    tokens_g = g.reshape(-1, g.shape[-1])
    dkernel = jnp.einsum("tk,tn->kn", tokens_x, tokens_g).astype(kernel.dtype)
    return dx, dkernel


dense.defvjp(_dense_fwd, _dense_bwd)


class Linear(nnx.Module):
    """y = x @ kernel (+ bias), kernel stored [in, out] in `param_dtype`, computed in `dtype`."""

    def __init__(self, d_in: int, d_out: int, cfg: ModelConfig, *, bias: bool, rngs: nnx.Rngs):
        param_dtype = jnp.dtype(cfg.param_dtype)
        init = nnx.initializers.normal(0.02)
        self.kernel = nnx.Param(init(rngs.params(), (d_in, d_out), param_dtype))
        self.bias = nnx.Param(jnp.zeros((d_out,), param_dtype)) if bias else None
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = dense(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


def project_together(x: jax.Array, linears: tuple[Linear, ...]) -> list[jax.Array]:
    """[linear(x) for linear in linears], as one matmul over the concatenated kernels when x
    holds one token per row (a decode step) on CPU.

    There each product is a skinny dot whose cost on CPU is mostly per-call overhead (~50 us
    for a [8, 256] x [256, 688] product, 3-5x its memory roofline); one dot for q/k/v and one
    for gate/up cut a demo-size decode step from 2.1 to 1.7 ms. The concatenation reads only
    parameters, so XLA hoists it out of the decode loop: it runs once per `generate` call.
    Elsewhere the separate products are kept: with more tokens per row training would pay the
    concatenation and its split gradient every step, and on accelerators the kernels keep their
    own tensor-parallel shardings.
    """
    if x.shape[-2] != 1 or jax.default_backend() != "cpu":
        return [linear(x) for linear in linears]
    dtype = linears[0].dtype
    kernel = jnp.concatenate([linear.kernel[...].astype(dtype) for linear in linears], axis=-1)
    y = jnp.dot(x.astype(dtype), kernel)
    if linears[0].bias is not None:
        y = y + jnp.concatenate([linear.bias[...].astype(dtype) for linear in linears])
    splits = np.cumsum([linear.kernel.shape[-1] for linear in linears])[:-1]
    return jnp.split(y, splits, axis=-1)


def rope_inverse_frequencies(cfg: ModelConfig) -> np.ndarray:
    """Rotary inverse frequencies theta^(-2i/d), with linear or Llama-3 scaling.

    Computed once in float64 on the host (a constant of the compiled program), then rounded to
    float32. Llama-3 scaling (Meta 2024): wavelengths above `original_max / low_freq_factor` are
    divided by `factor`, those below `original_max / high_freq_factor` are kept, and the band in
    between interpolates smoothly between the two.
    """
    rope = cfg.rope
    dim = cfg.head_dim
    inv = 1.0 / (rope.theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    if rope.rope_type == "linear":
        inv = inv / rope.factor
    elif rope.rope_type == "llama3":
        low_wavelen = rope.original_max_position_embeddings / rope.low_freq_factor
        high_wavelen = rope.original_max_position_embeddings / rope.high_freq_factor
        wavelen = 2 * math.pi / inv
        smooth = (rope.original_max_position_embeddings / wavelen - rope.low_freq_factor) / (
            rope.high_freq_factor - rope.low_freq_factor
        )
        interpolated = (1 - smooth) * inv / rope.factor + smooth * inv
        scaled = np.where(wavelen > low_wavelen, inv / rope.factor, inv)
        mid_band = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(mid_band, interpolated, scaled)
    return inv.astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotate halves of the head dimension (the HF / NeoX layout). x: [B, T, H, D]."""
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, D/2]
    cos = jnp.concatenate([jnp.cos(angles)] * 2, -1)[:, :, None, :]
    sin = jnp.concatenate([jnp.sin(angles)] * 2, -1)[:, :, None, :]
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], -1)
    out = x.astype(jnp.float32) * cos + rotated.astype(jnp.float32) * sin
    return out.astype(x.dtype)


def attention_mask(
    q_positions: jax.Array, q_segments: jax.Array, k_positions: jax.Array, k_segments: jax.Array
) -> jax.Array:
    """Boolean [B, Tq, Tk] visibility: same non-zero segment and causal by position (a sliding
    window further requires `q_position - k_position < window`)."""
    same = (q_segments[:, :, None] == k_segments[:, None, :]) & (k_segments[:, None, :] != 0)
    return same & (q_positions[:, :, None] >= k_positions[:, None, :])


Columns = slice | jax.Array  # a static range of columns, or [B, W] column indices per row


def take_columns(x: jax.Array, columns: Columns) -> jax.Array:
    """x [B, T, ...] at `columns` along axis 1: a static `slice`, or int [B, W] indices (each
    row its own W columns) -> [B, W, ...]."""
    if isinstance(columns, slice):
        return x[:, columns]
    index = columns.reshape(columns.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)


# A cache of S slots is read as its shortest prefix in {S, S/2, S/4, ...} (each rounded up to a
# multiple of this many slots) that covers the filled slots: one compiled branch per length.
CACHE_BLOCK = 64


def _attend(q: jax.Array, k_t: jax.Array, v: jax.Array, mask: jax.Array, cfg: ModelConfig):
    """softmax(q k^T * scale, masked) v for q [B, T, KV, G, D], keys transposed k_t
    [B, KV, D, S], values v [B, KV, S, D], mask [B, T, S]; returns [B, T, KV * G * D].

    Keys are stored transposed so both products are plain (non-transposed) batched matmuls:
    on CPU a transposed operand costs about 2x. For a single query (T = 1, a decode step) the
    scores are a broadcast multiply-and-sum over D instead, which XLA fuses into one pass over
    the keys (a batched mat-vec dot took 100 us vs 26 us on CPU for 8 rows x 4 kv heads x 2
    groups x 32 dims against 192 keys). The values keep the matmul: as a multiply-and-sum over
    S they materialised the [.., S, D] product (140-190 us vs 70 us for the matmul; 64 rows:
    1.3-1.7 ms vs 0.27-0.36 ms). Masked scores are written as -1e30, so they weigh exactly 0
    beside any visible key.
    """
    b, t, kv, g = q.shape[:4]
    if t == 1:
        q32 = q[:, 0, :, :, :, None].astype(jnp.float32)  # [B, KV, G, D, 1]
        scores = jnp.sum(q32 * k_t[:, :, None].astype(jnp.float32), axis=3)[:, :, :, None]
    else:  # [B, KV, G * T, D] @ [B, KV, D, S]: a batched matmul in its canonical layout
        q_rows = q.transpose(0, 2, 3, 1, 4).reshape(b, kv, g * t, -1)
        scores = jnp.matmul(q_rows, k_t.astype(q.dtype)).astype(jnp.float32)
        scores = scores.reshape(b, kv, g, t, -1)
    scores = scores * cfg.query_scale
    if cfg.attn_logit_softcap is not None:
        scores = jnp.tanh(scores / cfg.attn_logit_softcap) * cfg.attn_logit_softcap
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASKED)
    probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.matmul(probs.astype(v.dtype).reshape(b, kv, g * t, -1), v)  # [B, KV, G * T, D]
    return out.reshape(b, kv, g, t, -1).transpose(0, 3, 1, 2, 4).reshape(b, t, -1)


def prefix_lengths(capacity: int) -> list[int]:
    """The cache lengths a step may read: capacity, then halves rounded up to a multiple of
    `CACHE_BLOCK`, down to one block. A prefix is read (copied) only when it is at most about
    half the cache, so reading it never costs much more than reading the whole cache."""
    lengths = {capacity}
    length = capacity
    while length > CACHE_BLOCK:
        length = -(-(length // 2) // CACHE_BLOCK) * CACHE_BLOCK
        lengths.add(length)
    return sorted(lengths)


def _attend_filled(q, k_t, v, mask, filled: jax.Array | int, cfg: ModelConfig) -> jax.Array:
    """`_attend` over the cache's shortest prefix (see `prefix_lengths`) that holds all `filled`
    slots; every later slot is empty and masked, so the result equals attending to the whole
    cache, while a mostly empty cache is not read in full every step. A traced `filled` (a
    decode step) picks the prefix with a `lax.switch`; a Python int (a prefill, or the RL
    forward's prompt and completion chunks) picks it when tracing: no switch, whose gradient
    would also keep every branch's residuals."""
    lengths = prefix_lengths(v.shape[2])
    if isinstance(filled, int):
        length = next(length for length in lengths if length >= filled)
        return _attend(q, k_t[..., :length], v[:, :, :length], mask[..., :length], cfg)
    if len(lengths) == 1:
        return _attend(q, k_t, v, mask, cfg)

    def prefix(length: int):
        return lambda q, k_t, v, mask: _attend(
            q, k_t[..., :length], v[:, :, :length], mask[..., :length], cfg
        )

    index = jnp.minimum(jnp.sum(jnp.asarray(lengths) < filled), len(lengths) - 1)
    return jax.lax.switch(index, [prefix(length) for length in lengths], q, k_t, v, mask)


class Attention(nnx.Module):
    """Multi-head attention with grouped-query heads (Ainslie et al. 2023) and optional
    QK-norm (Qwen3), logit soft-capping (Gemma 2) and a KV cache."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = Linear(d, cfg.num_heads * hd, cfg, bias=cfg.qkv_bias, rngs=rngs)
        self.k_proj = Linear(d, cfg.num_kv_heads * hd, cfg, bias=cfg.qkv_bias, rngs=rngs)
        self.v_proj = Linear(d, cfg.num_kv_heads * hd, cfg, bias=cfg.qkv_bias, rngs=rngs)
        self.o_proj = Linear(cfg.num_heads * hd, d, cfg, bias=cfg.o_bias, rngs=rngs)
        if cfg.qk_norm:
            self.q_norm = Norm(hd, cfg, rngs=rngs)
            self.k_norm = Norm(hd, cfg, rngs=rngs)
        else:
            self.q_norm = self.k_norm = None
        self.cfg = cfg

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        inv_freq: jax.Array | None,
        mask: jax.Array,
        cache: tuple[jax.Array, jax.Array] | None = None,
        cache_index: jax.Array | int | None = None,
        query_columns: Columns | None = None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """x [B, T, D] at `positions` [B, T]; mask [B, Tq, S]: which keys each query sees (S = T
        without a cache, the cache length with one). cache: this layer's (keys transposed
        [B, KV, head_dim, S], values [B, KV, S, head_dim]); the chunk's keys/values are written at
        slots [cache_index, cache_index + T) and the updated pair is returned. Every column
        gives keys and values; only `query_columns` (see `take_columns`; all T when None) give
        queries, so the output is [B, Tq, D] with Tq the number of query columns."""
        cfg = self.cfg
        b, t, _ = x.shape
        if query_columns is None:
            q, k, v = project_together(x, (self.q_proj, self.k_proj, self.v_proj))
            q_positions = positions
        else:
            q = self.q_proj(take_columns(x, query_columns))
            k, v = project_together(x, (self.k_proj, self.v_proj))
            q_positions = take_columns(positions, query_columns)
        tq = q.shape[1]
        q = q.reshape(b, tq, cfg.num_heads, cfg.head_dim)
        k = k.reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        v = v.reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if inv_freq is not None:
            q, k = apply_rope(q, q_positions, inv_freq), apply_rope(k, positions, inv_freq)
        k, v = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # [B, KV, hd, T], [B, KV, T, hd]
        q = q.reshape(b, tq, cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads, cfg.head_dim)

        if cache is None:
            return self.o_proj(_attend(q, k, v, mask, cfg)), None
        k_cache, v_cache = cache
        k = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, 0, 0, cache_index))
        v = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, 0, cache_index, 0))
        out = _attend_filled(q, k, v, mask, cache_index + t, cfg)
        return self.o_proj(out), (k, v)


class MLP(nnx.Module):
    """Gated MLP (SwiGLU / GeGLU, Shazeer 2020): down(act(gate(x)) * up(x)); or the plain
    two-layer MLP of GPT-2: down(act(up(x)))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Linear(d, f, cfg, bias=cfg.mlp_bias, rngs=rngs) if cfg.gated_mlp else None
        self.up_proj = Linear(d, f, cfg, bias=cfg.mlp_bias, rngs=rngs)
        self.down_proj = Linear(f, d, cfg, bias=cfg.mlp_bias, rngs=rngs)
        self.activation = cfg.activation

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.gate_proj is None:
            return self.down_proj(_activation(self.activation, self.up_proj(x)))
        gate, up = project_together(x, (self.gate_proj, self.up_proj))
        return self.down_proj(_activation(self.activation, gate) * up)


class Block(nnx.Module):
    """Pre-norm residual block; Gemma 2 adds a norm after attention and after the MLP."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.attn_norm = Norm(d, cfg, rngs=rngs)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = Norm(d, cfg, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs)
        if cfg.sandwich_norms:
            self.post_attn_norm = Norm(d, cfg, rngs=rngs)
            self.post_mlp_norm = Norm(d, cfg, rngs=rngs)
        else:
            self.post_attn_norm = self.post_mlp_norm = None

    def __call__(
        self, x: jax.Array, *args, query_columns: Columns | None = None, **kwargs
    ) -> tuple[jax.Array, tuple | None]:
        """x [B, T, D] -> ([B, Tq, D], cache); with `query_columns` only those columns go on
        past the attention's keys and values (see `Attention.__call__`)."""
        h, cache = self.attn(self.attn_norm(x), *args, query_columns=query_columns, **kwargs)
        if self.post_attn_norm is not None:
            h = self.post_attn_norm(h)
        if query_columns is not None:
            x = take_columns(x, query_columns)
        x = x + h
        h = self.mlp(self.mlp_norm(x))
        if self.post_mlp_norm is not None:
            h = self.post_mlp_norm(h)
        return x + h, cache

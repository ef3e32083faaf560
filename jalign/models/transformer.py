"""The decoder-only transformer (`DecoderLM`) and its functional interface.

`DecoderLM` is a Flax NNX module. Outside of model construction jalign never holds a live
module: it splits it once into a `graphdef` (static structure) and a plain nested dict of
parameter arrays (`params`), and every step calls `apply(graphdef, params, ...)`. Policy,
reference, reward and value models are just different `params` for a graphdef, and the sampler
reads the same `params` the trainer updates.

Heads: `head="lm"` gives next-token logits (tied to the embedding or an `lm_head`);
`head="scalar"` gives one scalar per token from a `score` projection (reward / value models,
read at the last real token for a reward).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jalign.models.config import ModelConfig
from jalign.models.layers import (
    Block,
    Columns,
    Linear,
    Norm,
    attention_mask,
    dense,
    rope_inverse_frequencies,
    take_columns,
)

Params = dict[str, Any]
HEADS = ("lm", "scalar")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Keys/values of every layer plus the positions and segment ids of the cached slots.

    k: a tuple with one [batch, num_kv_heads, head_dim, max_len] array per layer (keys stored
    transposed, see `layers._attend`); v: one [batch, num_kv_heads, max_len, head_dim] array per
    layer. Per-layer buffers let a decode step write each layer's new slot in place and read only
    that layer's buffer; with `scan_layers` each is one array stacked over a leading layer axis,
    as the scanned stack consumes it. positions, segment_ids: [batch, max_len] (segment 0 marks an
    empty or padding slot, never attended to).
    """

    k: tuple[jax.Array, ...] | jax.Array
    v: tuple[jax.Array, ...] | jax.Array
    positions: jax.Array
    segment_ids: jax.Array

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype: Any = None) -> KVCache:
        dtype = jnp.dtype(dtype or cfg.dtype)
        k_shape = (batch, cfg.num_kv_heads, cfg.head_dim, max_len)
        v_shape = (batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        if cfg.scan_layers:
            k = jnp.zeros((cfg.num_layers, *k_shape), dtype)
            v = jnp.zeros((cfg.num_layers, *v_shape), dtype)
        else:
            k = tuple(jnp.zeros(k_shape, dtype) for _ in range(cfg.num_layers))
            v = tuple(jnp.zeros(v_shape, dtype) for _ in range(cfg.num_layers))
        return cls(
            k=k,
            v=v,
            positions=jnp.zeros((batch, max_len), jnp.int32),
            segment_ids=jnp.zeros((batch, max_len), jnp.int32),
        )

    @property
    def max_len(self) -> int:
        return self.positions.shape[1]

    def repeat_rows(self, n: int, tiled: bool = False) -> KVCache:
        """Every row n times (`repeat_rows`). Rows are axis 1 of the keys / values stacked over
        layers, axis 0 everywhere else."""
        kv_axis = 0 if isinstance(self.k, tuple) else 1
        k, v = jax.tree.map(lambda x: repeat_rows(x, n, tiled, kv_axis), (self.k, self.v))
        return KVCache(
            k=k,
            v=v,
            positions=repeat_rows(self.positions, n, tiled),
            segment_ids=repeat_rows(self.segment_ids, n, tiled),
        )


def repeat_rows(x: jax.Array, n: int, tiled: bool = False, axis: int = 0) -> jax.Array:
    """Each row of `x` (along `axis`) repeated n times: rows [i*n, (i+1)*n) are copies of row
    i, or, `tiled`, the B rows n times over (row j a copy of row j mod B)."""
    if tiled:
        return jnp.concatenate([x] * n, axis=axis)
    return jnp.repeat(x, n, axis=axis)


class DecoderLM(nnx.Module):
    """Embeddings, a stack of `Block`s (a Python list, or one stacked block run with
    `lax.scan` when `cfg.scan_layers`), a final norm and a head."""

    def __init__(self, cfg: ModelConfig, *, head: str = "lm", rngs: nnx.Rngs):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.cfg = cfg
        self.head = head

        def table(rows: int) -> nnx.Embed:
            return nnx.Embed(
                rows,
                cfg.hidden_size,
                dtype=jnp.dtype(cfg.dtype),
                param_dtype=jnp.dtype(cfg.param_dtype),
                embedding_init=nnx.initializers.normal(0.02),
                rngs=rngs,
            )

        self.embed = table(cfg.vocab_size)
        learned = cfg.position_kind == "learned"
        self.pos_embed = table(cfg.max_position_embeddings) if learned else None
        if cfg.scan_layers:

            @nnx.split_rngs(splits=cfg.num_layers)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def stacked(layer_rngs: nnx.Rngs) -> Block:
                return Block(cfg, rngs=layer_rngs)

            self.layers = stacked(rngs)
        else:
            self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = Norm(cfg.hidden_size, cfg, rngs=rngs)
        untied = head == "lm" and not cfg.tie_word_embeddings
        self.lm_head = (
            Linear(cfg.hidden_size, cfg.vocab_size, cfg, bias=False, rngs=rngs) if untied else None
        )
        self.score = (
            Linear(cfg.hidden_size, 1, cfg, bias=True, rngs=rngs) if head == "scalar" else None
        )

    def __call__(
        self,
        input_ids: jax.Array,
        positions: jax.Array,
        segment_ids: jax.Array,
        cache: KVCache | None = None,
        cache_index: jax.Array | int | None = None,
        return_hidden: bool = False,
        read_columns: Columns | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """Run the model on a [B, T] chunk of tokens.

        Without a cache the chunk attends to itself. With a cache the chunk's keys/values are
        written at slots [cache_index, cache_index + T) and the chunk attends to every valid
        cached slot. Returns (outputs, cache): outputs are logits [B, T, V] (lm head), scalars
        [B, T] (scalar head) or, with `return_hidden`, final-normed hidden states [B, T, D].

        `read_columns` (a static `slice` or int [B, W] indices, see `layers.take_columns`):
        return the outputs at those columns only, [B, W, ...]. The last block then computes
        its keys and values at every column (the read columns attend to them) but its queries,
        attention output, MLP, the final norm and the head only at the read ones: an SFT or
        DPO loss reads the completion, a reward model the last token, a prefill the last
        prompt token. With `scan_layers` the whole stack runs and the columns are taken after
        it (a scanned stack runs every layer alike).
        """
        cfg = self.cfg
        x = self.embed(input_ids)
        if cfg.embed_scale != 1.0:
            x = x * jnp.asarray(cfg.embed_scale, x.dtype)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        inv_freq = rope_inverse_frequencies(cfg) if cfg.position_kind == "rope" else None

        k_positions, k_segments = positions, segment_ids
        if cache is not None:
            start = (0, cache_index)
            cache = dataclasses.replace(
                cache,
                positions=jax.lax.dynamic_update_slice(cache.positions, positions, start),
                segment_ids=jax.lax.dynamic_update_slice(cache.segment_ids, segment_ids, start),
            )
            k_positions, k_segments = cache.positions, cache.segment_ids
        # Masks are built once per call (one per distinct window), not once per layer.
        visible = attention_mask(positions, segment_ids, k_positions, k_segments)
        delta = positions[:, :, None] - k_positions[:, None, :]

        x, new_kv = self._run_layers(
            x, positions, inv_freq, visible, delta, cache, cache_index, read_columns
        )
        if cache is not None:
            cache = dataclasses.replace(cache, k=new_kv[0], v=new_kv[1])

        h = self.final_norm(x)
        if return_hidden:
            return h, cache
        return self.project(h), cache

    def head_kernel(self) -> jax.Array:
        """The lm head as a [hidden, vocab] matrix (the embedding transposed when tied).
        A decoder computes it once and passes it to every step's `project`."""
        if self.lm_head is not None:
            return self.lm_head.kernel[...]
        return self.embed.embedding[...].T

    def project(self, hidden: jax.Array, head_kernel: jax.Array | None = None) -> jax.Array:
        """Head applied to final hidden states: logits (soft-capped if configured) or scalars.
        `head_kernel`: a precomputed `head_kernel()` (lm head only)."""
        cfg = self.cfg
        if self.score is not None:
            return self.score(hidden)[..., 0].astype(jnp.float32)
        if head_kernel is not None:
            dtype = jnp.dtype(cfg.dtype)
            logits = dense(hidden.astype(dtype), head_kernel.astype(dtype))
        elif self.lm_head is not None:
            logits = self.lm_head(hidden)
        else:
            dtype = jnp.dtype(cfg.dtype)
            logits = dense(hidden.astype(dtype), self.embed.embedding[...].astype(dtype).T)
        logits = logits.astype(jnp.float32)
        if cfg.final_logit_softcap is not None:
            logits = jnp.tanh(logits / cfg.final_logit_softcap) * cfg.final_logit_softcap
        return logits

    def _run_layers(self, x, positions, inv_freq, visible, delta, cache, cache_index, columns):
        """The block stack; returns (x, (k, v) of the updated cache or None); x only at
        `columns` when given (see `__call__`)."""
        cfg = self.cfg
        if not cfg.scan_layers:
            masks = {
                w: visible if w is None else visible & (delta < w) for w in set(cfg.sliding_windows)
            }
            ks, vs = [], []
            last = len(self.layers) - 1
            for i, block in enumerate(self.layers):
                layer_kv = (cache.k[i], cache.v[i]) if cache is not None else None
                mask = masks[cfg.sliding_windows[i]]
                queries = columns if i == last else None
                if queries is not None:
                    mask = take_columns(mask, queries)

                def layer(blk, h, kv, mask=mask, queries=queries):
                    return blk(h, positions, inv_freq, mask, kv, cache_index, query_columns=queries)

                if cfg.remat:
                    layer = nnx.remat(layer)
                x, layer_kv = layer(block, x, layer_kv)
                if layer_kv is not None:
                    ks.append(layer_kv[0])
                    vs.append(layer_kv[1])
            return x, ((tuple(ks), tuple(vs)) if cache is not None else None)

        # Scanned stack: one traced block; the per-layer window travels as data, a window of
        # None becoming a distance no sequence reaches.
        full = jnp.iinfo(jnp.int32).max
        windows = jnp.asarray([full if w is None else w for w in cfg.sliding_windows], jnp.int32)
        uses_window = any(w is not None for w in cfg.sliding_windows)
        graphdef, stacked = nnx.split(self.layers)
        kv_xs = (cache.k, cache.v) if cache is not None else None

        def body(h, xs):
            layer_state, window, layer_kv = xs
            block = nnx.merge(graphdef, layer_state)
            mask = visible & (delta < window) if uses_window else visible
            return block(h, positions, inv_freq, mask, layer_kv, cache_index)

        if cfg.remat:
            body = jax.checkpoint(body)
        x, new_kv = jax.lax.scan(body, x, (stacked, windows, kv_xs))
        return (x if columns is None else take_columns(x, columns)), new_kv


def create_model(cfg: ModelConfig, head: str = "lm", seed: int = 0) -> tuple[nnx.GraphDef, Params]:
    """Randomly initialise a model; returns (graphdef, params as a nested dict of arrays)."""
    model = DecoderLM(cfg, head=head, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(model, nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def abstract_model(cfg: ModelConfig, head: str = "lm") -> tuple[nnx.GraphDef, Params]:
    """(graphdef, params of `jax.ShapeDtypeStruct`s): the model's shapes with no memory used."""
    model = nnx.eval_shape(lambda: DecoderLM(cfg, head=head, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model, nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def apply(
    graphdef: nnx.GraphDef,
    params: Params,
    input_ids: jax.Array,
    positions: jax.Array,
    segment_ids: jax.Array,
    cache: KVCache | None = None,
    cache_index: jax.Array | int | None = None,
    return_hidden: bool = False,
    read_columns: Columns | None = None,
) -> tuple[jax.Array, KVCache | None]:
    """Functional forward pass: `DecoderLM.__call__` on `params`. Pure, jit-able."""
    model = nnx.merge(graphdef, params)
    return model(input_ids, positions, segment_ids, cache, cache_index, return_hidden, read_columns)


def head_kernel(graphdef: nnx.GraphDef, params: Params) -> jax.Array:
    """The lm head as a [hidden, vocab] matrix (see `DecoderLM.head_kernel`)."""
    return nnx.merge(graphdef, params).head_kernel()


def project(
    graphdef: nnx.GraphDef, params: Params, hidden: jax.Array, kernel: jax.Array | None = None
) -> jax.Array:
    """Apply the head to hidden states (used by chunked logprobs to avoid [B, T, V] at once);
    `kernel`: a precomputed `head_kernel` (the decoder's, transposed once per call)."""
    return nnx.merge(graphdef, params).project(hidden, kernel)

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
from jalign.models.layers import Block, Linear, Norm, rope_inverse_frequencies

Params = dict[str, Any]
HEADS = ("lm", "scalar")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Keys/values of every layer plus the positions and segment ids of the cached slots.

    k, v: [num_layers, batch, max_len, num_kv_heads, head_dim]; positions, segment_ids:
    [batch, max_len] (segment 0 marks an empty or padding slot, never attended to).
    """

    k: jax.Array
    v: jax.Array
    positions: jax.Array
    segment_ids: jax.Array

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype: Any = None) -> KVCache:
        dtype = jnp.dtype(dtype or cfg.dtype)
        shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
        return cls(
            k=jnp.zeros(shape, dtype),
            v=jnp.zeros(shape, dtype),
            positions=jnp.zeros((batch, max_len), jnp.int32),
            segment_ids=jnp.zeros((batch, max_len), jnp.int32),
        )

    @property
    def max_len(self) -> int:
        return self.k.shape[2]


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
    ) -> tuple[jax.Array, KVCache | None]:
        """Run the model on a [B, T] chunk of tokens.

        Without a cache the chunk attends to itself. With a cache the chunk's keys/values are
        written at slots [cache_index, cache_index + T) and the chunk attends to every valid
        cached slot. Returns (outputs, cache): outputs are logits [B, T, V] (lm head), scalars
        [B, T] (scalar head) or, with `return_hidden`, final-normed hidden states [B, T, D].
        """
        cfg = self.cfg
        x = self.embed(input_ids)
        if cfg.embed_scale != 1.0:
            x = x * jnp.asarray(cfg.embed_scale, x.dtype)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        inv_freq = rope_inverse_frequencies(cfg) if cfg.position_kind == "rope" else None

        cache_kwargs: dict[str, Any] = {}
        if cache is not None:
            start = (0, cache_index)
            cache = dataclasses.replace(
                cache,
                positions=jax.lax.dynamic_update_slice(cache.positions, positions, start),
                segment_ids=jax.lax.dynamic_update_slice(cache.segment_ids, segment_ids, start),
            )
            cache_kwargs = dict(
                cache_positions=cache.positions,
                cache_segments=cache.segment_ids,
                cache_index=cache_index,
            )

        x, new_kv = self._run_layers(x, positions, segment_ids, inv_freq, cache, cache_kwargs)
        if cache is not None:
            cache = dataclasses.replace(cache, k=new_kv[0], v=new_kv[1])

        h = self.final_norm(x)
        if return_hidden:
            return h, cache
        return self.project(h), cache

    def project(self, hidden: jax.Array) -> jax.Array:
        """Head applied to final hidden states: logits (soft-capped if configured) or scalars."""
        cfg = self.cfg
        if self.score is not None:
            return self.score(hidden)[..., 0].astype(jnp.float32)
        logits = self.lm_head(hidden) if self.lm_head is not None else self.embed.attend(hidden)
        logits = logits.astype(jnp.float32)
        if cfg.final_logit_softcap is not None:
            logits = jnp.tanh(logits / cfg.final_logit_softcap) * cfg.final_logit_softcap
        return logits

    def _run_layers(self, x, positions, segment_ids, inv_freq, cache, cache_kwargs):
        cfg = self.cfg

        def block_call(block: Block, h, window, layer_kv):
            return block(h, positions, segment_ids, inv_freq, window, layer_kv, **cache_kwargs)

        if not cfg.scan_layers:
            ks, vs = [], []
            for i, block in enumerate(self.layers):
                layer_kv = (cache.k[i], cache.v[i]) if cache is not None else None
                window = cfg.sliding_windows[i]

                def layer(blk, h, kv, window=window):
                    return block_call(blk, h, window, kv)

                if cfg.remat:
                    layer = nnx.remat(layer)
                x, layer_kv = layer(block, x, layer_kv)
                if layer_kv is not None:
                    ks.append(layer_kv[0])
                    vs.append(layer_kv[1])
            return x, ((jnp.stack(ks), jnp.stack(vs)) if cache is not None else None)

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
            return block_call(block, h, window if uses_window else None, layer_kv)

        if cfg.remat:
            body = jax.checkpoint(body)
        return jax.lax.scan(body, x, (stacked, windows, kv_xs))


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
) -> tuple[jax.Array, KVCache | None]:
    """Functional forward pass: `DecoderLM.__call__` on `params`. Pure, jit-able."""
    model = nnx.merge(graphdef, params)
    return model(input_ids, positions, segment_ids, cache, cache_index, return_hidden)


def project(graphdef: nnx.GraphDef, params: Params, hidden: jax.Array) -> jax.Array:
    """Apply the head to hidden states (used by chunked logprobs to avoid [B, T, V] at once)."""
    return nnx.merge(graphdef, params).project(hidden)

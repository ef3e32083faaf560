"""`generate`: jit-compiled KV-cache decoding straight from the trainer's params pytree.

Compiled once per (graphdef, batch, prompt width, mesh, static parts of the
`SamplingParams`: greedy or not, top_k, whether top_p < 1 and min_p > 0, n, max_new_tokens, the
number of EOS ids): prefill the prompts in one `apply` call that fills a `KVCache` of
P + max_new_tokens - 1 slots, each prompt once however many samples it gets (its n rows then
start from copies of its cache: with GRPO's n = 8 the prefill does an eighth of the work), then
decode one token per step in a `lax.while_loop` that stops when every row has emitted an EOS or
max_new_tokens tokens. Params, prompts, rng, the EOS ids and the temperature / top_p / min_p
values are traced arguments, so new weights, new prompts of the same shape or new values of those
settings reuse the compiled programs. The prefill and the sampling loop are two programs: on CPU
the loop alone is compiled with `jalign.runtime.decode_compiler_options` (YNNPACK dots, about
25% faster decode steps; see `_Decoder`).

Row layout: prompt i is repeated n times, rows [i*n, (i+1)*n). Prompt token positions are
cumsum(mask) - 1; completion token j of a row sits at position (prompt length of the row) + j.
Once a row has emitted an EOS it emits `pad_id` with mask 0 and logprob 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jalign.errors import JalignError
from jalign.models import KVCache, ModelConfig, Params, apply, head_kernel, project
from jalign.runtime import decode_compiler_options
from jalign.sampling.distribution import Knobs, Truncation, draw, first_argmax, log_probs
from jalign.sampling.params import SamplingParams
from jalign.sampling.prompts import PromptBatch, check_prompt_batch

ROW_AXES = ("data", "fsdp")  # mesh axes the rows (batch) are split over
KV_HEAD_AXIS = "tensor"  # mesh axis the cache's kv heads are split over when it divides them


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SampleOutput:
    """Completions of a `generate` call; R = batch * n rows, rows [i*n, (i+1)*n) for prompt i.

    tokens int32 [R, max_new]: the completion, EOS included, `pad_id` after it.
    logprobs float32 [R, max_new]: log-prob of each token under the distribution it was sampled
      from (see `jalign.sampling.params`); 0 where mask is 0.
    mask float32 [R, max_new]: 1 on completion tokens (EOS included), 0 after.
    lengths int32 [R]: completion lengths (EOS included). finished_with_eos bool [R].
    prompt_ids int32 [R, P], prompt_mask int32 [R, P]: the left-padded prompt of each row.
    """

    tokens: jax.Array
    logprobs: jax.Array
    mask: jax.Array
    lengths: jax.Array
    finished_with_eos: jax.Array
    prompt_ids: jax.Array
    prompt_mask: jax.Array


@dataclasses.dataclass(frozen=True)
class _DecodeSpec:
    """Everything static about a decode (with the graphdef and mesh: the compile key)."""

    truncation: Truncation
    n: int
    max_new_tokens: int


def _row_axes(mesh: Mesh) -> tuple[str, ...]:
    return tuple(axis for axis in ROW_AXES if axis in mesh.axis_names)


def _row_shards(mesh: Mesh) -> int:
    return math.prod(mesh.shape[axis] for axis in _row_axes(mesh))


def _rows_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Leading (row) axis split over the mesh's data/fsdp axes, the rest replicated."""
    return NamedSharding(mesh, P(_row_axes(mesh), *([None] * (ndim - 1))))


def cache_sharding(mesh: Mesh, cfg: ModelConfig) -> KVCache:
    """Shardings of a `KVCache`: rows over data/fsdp; kv heads over "tensor" when it divides
    them, else replicated on that axis (one sharding per layer buffer, or one for the stacked
    buffer of a scanned model)."""
    heads = None
    if KV_HEAD_AXIS in mesh.axis_names and cfg.num_kv_heads % mesh.shape[KV_HEAD_AXIS] == 0:
        heads = KV_HEAD_AXIS
    spec = P(_row_axes(mesh), heads, None, None)
    if cfg.scan_layers:
        kv = NamedSharding(mesh, P(None, *spec))
    else:
        kv = (NamedSharding(mesh, spec),) * cfg.num_layers
    rows = _rows_sharding(mesh, 2)
    return KVCache(k=kv, v=kv, positions=rows, segment_ids=rows)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Prefilled:
    """The prompts run through the model, per sample row (R = batch * n): the cache, the logits
    that pick completion token 0 [R, V], and the prompts [R, P]."""

    cache: KVCache
    logits: jax.Array
    prompt_ids: jax.Array
    prompt_mask: jax.Array


@dataclasses.dataclass(frozen=True)
class _Decoder:
    """The two compiled programs of a compile key. The prefill keeps the process's XLA options,
    so a prompt's cache is computed by the same kernels as the trainer's forward pass and does
    not depend on how many prompts share the batch; the sampling loop, whose matmuls have one
    row per sample, gets `decode_compiler_options`."""

    prefill: Callable
    sample: Callable

    def __call__(self, params, input_ids, prompt_mask, eos_ids, rng, knobs) -> SampleOutput:
        return self.sample(
            params, self.prefill(params, input_ids, prompt_mask), eos_ids, rng, knobs
        )


def _build_decoder(graphdef: nnx.GraphDef, cfg: ModelConfig, spec: _DecodeSpec, mesh: Mesh | None):
    """The pure prefill and sampling functions of one compile key (jitted by `_decoder`)."""
    truncation, max_new = spec.truncation, spec.max_new_tokens
    pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    kv_shardings = None if mesh is None else cache_sharding(mesh, cfg)

    def constrain(tree, shardings):
        return tree if mesh is None else jax.lax.with_sharding_constraint(tree, shardings)

    def rows(x):
        return x if mesh is None else constrain(x, _rows_sharding(mesh, x.ndim))

    def prefill(params: Params, input_ids, prompt_mask) -> _Prefilled:
        """Each prompt run once into the cache; its n rows start from copies of its cache
        and of its last logits."""
        input_ids, prompt_mask = input_ids.astype(jnp.int32), prompt_mask.astype(jnp.int32)
        batch, width = input_ids.shape
        cache = KVCache.init(cfg, batch, width + max_new - 1)
        if mesh is not None and batch % _row_shards(mesh) == 0:
            cache = constrain(cache, kv_shardings)
        positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1) - 1, 0)
        hidden, cache = apply(
            graphdef,
            params,
            input_ids,
            positions,
            prompt_mask,
            cache,
            0,
            return_hidden=True,
            read_columns=slice(width - 1, None),  # the last prompt token picks token 0
        )
        logits = project(graphdef, params, hidden[:, 0])

        def per_sample(x):
            return rows(jnp.repeat(x, spec.n, axis=0))

        return _Prefilled(
            cache=constrain(cache.repeat_rows(spec.n), kv_shardings),
            logits=per_sample(logits),
            prompt_ids=per_sample(input_ids),
            prompt_mask=per_sample(prompt_mask),
        )

    def sample(params: Params, state: _Prefilled, eos_ids, rng, knobs: Knobs) -> SampleOutput:
        """The completions, one token per step of a while loop, from a prefilled state."""
        cache, prompt_ids, prompt_mask = state.cache, state.prompt_ids, state.prompt_mask
        num_rows, width = prompt_ids.shape
        kernel = head_kernel(graphdef, params)  # transposed once, not once per step
        prompt_lengths = prompt_mask.sum(axis=1)

        def choose(logits, step, done):
            """Token, logprob and updated `done` of every row at completion index `step`."""
            logp = log_probs(logits, truncation, knobs)
            if truncation.greedy:
                token = first_argmax(logits)
            else:
                token = draw(logp, jax.random.fold_in(rng, step))
            logprob = jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]
            live = ~done
            token = jnp.where(live, token, pad_id)
            logprob = jnp.where(live, logprob, 0.0)
            done = done | (live & (token[:, None] == eos_ids[None, :]).any(axis=-1))
            return token, logprob, live, done

        def record(out, step, token, logprob, live):
            tokens, logprobs, mask = out
            return (
                tokens.at[:, step].set(token),
                logprobs.at[:, step].set(logprob),
                mask.at[:, step].set(live.astype(jnp.float32)),
            )

        out = (
            rows(jnp.full((num_rows, max_new), pad_id, jnp.int32)),
            rows(jnp.zeros((num_rows, max_new), jnp.float32)),
            rows(jnp.zeros((num_rows, max_new), jnp.float32)),
        )
        token, logprob, live, done = choose(state.logits, 0, jnp.zeros((num_rows,), bool))
        out = record(out, 0, token, logprob, live)

        def cond(carry):
            step, _, done, _, _ = carry
            return (step < max_new) & ~done.all()

        def body(carry):
            step, token, done, cache, out = carry
            hidden, cache = apply(
                graphdef,
                params,
                token[:, None],
                (prompt_lengths + step - 1)[:, None],
                jnp.ones((num_rows, 1), jnp.int32),
                cache,
                width + step - 1,
                return_hidden=True,
            )
            cache = constrain(cache, kv_shardings)
            logits = project(graphdef, params, hidden[:, 0], kernel)
            token, logprob, live, done = choose(logits, step, done)
            return step + 1, token, done, cache, record(out, step, token, logprob, live)

        carry = (jnp.asarray(1, jnp.int32), token, done, cache, out)
        _, _, done, _, (tokens, logprobs, mask) = jax.lax.while_loop(cond, body, carry)
        output = SampleOutput(
            tokens=tokens,
            logprobs=logprobs,
            mask=mask,
            lengths=mask.sum(axis=1).astype(jnp.int32),
            finished_with_eos=done,
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
        )
        return jax.tree.map(rows, output)

    return prefill, sample


_DECODERS: dict[tuple, tuple[ModelConfig, _Decoder]] = {}
_MAX_DECODERS = 32


def _decoder(graphdef: nnx.GraphDef, params: Params, spec: _DecodeSpec, mesh: Mesh | None):
    """(model config, compiled `_Decoder`) of a compile key, built once; jax caches each
    program's compilations per input shape. The graphdef is hashed once per call (it is the
    costly part of the key) and the model is merged only on a miss."""
    key = (graphdef, spec, mesh)
    entry = _DECODERS.get(key)
    if entry is None:
        cfg = _lm_config(graphdef, params)
        if len(_DECODERS) >= _MAX_DECODERS:
            del _DECODERS[next(iter(_DECODERS))]
        platform_name = jax.default_backend() if mesh is None else mesh.devices.flat[0].platform
        prefill, sample = _build_decoder(graphdef, cfg, spec, mesh)
        decoder = _Decoder(
            prefill=jax.jit(prefill),
            sample=jax.jit(sample, compiler_options=decode_compiler_options(platform_name)),
        )
        entry = _DECODERS[key] = (cfg, decoder)
    return entry


def _check_mesh(mesh: Mesh) -> None:
    explicit = [
        name
        for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
        if kind != jax.sharding.AxisType.Auto
    ]
    if explicit:
        raise JalignError(
            f"mesh axes {explicit} are not AxisType.Auto; allowed: a mesh whose axes are all "
            "Auto (sharding propagated by the compiler), e.g. jax.make_mesh(shape, names, "
            "axis_types=(jax.sharding.AxisType.Auto,) * len(names))"
        )


def _lm_config(graphdef: nnx.GraphDef, params: Params) -> ModelConfig:
    model = nnx.merge(graphdef, params)
    if model.head != "lm":
        raise JalignError(f"generate needs a model with an lm head, got head={model.head!r}")
    return model.cfg


def _eos_array(cfg: ModelConfig, sampling: SamplingParams) -> np.ndarray:
    """EOS ids as a traced int32 array (so a new EOS does not recompile); -1 fills the single
    slot when there is no EOS (no token matches it)."""
    eos_ids = cfg.eos_token_ids if sampling.eos_ids is None else sampling.eos_ids
    bad = [i for i in eos_ids if i >= cfg.vocab_size]
    if bad:
        raise JalignError(
            f"sampling.eos_ids has id {bad[0]} outside the vocabulary; allowed: "
            f"0 <= id < vocab_size={cfg.vocab_size}"
        )
    return np.asarray(eos_ids or (-1,), np.int32)


def generate(
    graphdef: nnx.GraphDef,
    params: Params,
    prompts: PromptBatch,
    sampling_params: SamplingParams,
    rng: jax.Array | None = None,
    *,
    mesh: Mesh | None = None,
) -> SampleOutput:
    """Sample `sampling_params.n` completions per prompt with a KV cache (see module docstring).

    prompts: left-padded `PromptBatch` (see `make_prompt_batch`). rng: a jax PRNG key; None uses
    `jax.random.key(sampling_params.seed)`. mesh: with a mesh, rows are split over its
    "data"/"fsdp" axes (batch * n must be divisible by their product), the KV cache as in
    `cache_sharding`; params are used with the sharding they already carry. The pad token
    (`pad_token_id` of the model config, else 0) fills the completion after an EOS.
    """
    spec = _DecodeSpec(
        truncation=Truncation.of(sampling_params),
        n=sampling_params.n,
        max_new_tokens=sampling_params.max_new_tokens,
    )
    cfg, decoder = _decoder(graphdef, params, spec, mesh)
    eos_ids = _eos_array(cfg, sampling_params)
    prompt_lengths = check_prompt_batch(prompts, cfg.vocab_size)
    longest = int(prompt_lengths.max())
    if longest + spec.max_new_tokens > cfg.max_position_embeddings:
        raise JalignError(
            f"longest prompt ({longest} tokens) + sampling.max_new_tokens="
            f"{spec.max_new_tokens} exceeds the model context max_position_embeddings="
            f"{cfg.max_position_embeddings}; allowed: prompt + max_new_tokens <= "
            f"{cfg.max_position_embeddings}"
        )
    input_ids, prompt_mask = prompts.input_ids, prompts.mask
    if mesh is not None:
        _check_mesh(mesh)
        shards = _row_shards(mesh)
        batch = input_ids.shape[0]
        if (batch * spec.n) % shards:
            raise JalignError(
                f"batch {batch} x sampling.n={spec.n} rows cannot be split over the mesh's "
                f"{'x'.join(_row_axes(mesh))} axes ({shards} shards); allowed: a multiple of {shards}"
            )
        placement = _rows_sharding(mesh, 2) if batch % shards == 0 else NamedSharding(mesh, P())
        input_ids, prompt_mask = jax.device_put((input_ids, prompt_mask), placement)
    if rng is None:
        rng = jax.random.key(sampling_params.seed)
    return decoder(params, input_ids, prompt_mask, eos_ids, rng, Knobs.of(sampling_params))

"""`apply(..., read_columns=...)`: outputs at some columns only, the last block running its
queries and MLP there alone. Its outputs, gradients and KV cache equal those of the full
forward at the same columns, in every model family."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FAMILY_CONFIGS
from jalign.models import KVCache, apply, create_model, from_hf_dict, take_columns

ROWS, WIDTH = 3, 9
_rng = np.random.default_rng(0)
IDS = jnp.asarray(_rng.integers(4, 90, (ROWS, WIDTH)), jnp.int32)
# Row 1 is left-padded by 3 slots, row 2 right-padded by 2: positions restart per real token.
SEGMENTS = jnp.ones((ROWS, WIDTH), jnp.int32).at[1, :3].set(0).at[2, 7:].set(0)
POSITIONS = jnp.maximum(jnp.cumsum(SEGMENTS, axis=1) - 1, 0)
# Each row its own columns (unsorted, repeated) and a static range.
COLUMNS = jnp.asarray([[2, 5, 8], [8, 4, 6], [0, 6, 6]], jnp.int32)
RANGE = slice(3, 7)


def model(family: str, scan_layers: bool = False, seed: int = 3):
    cfg = dataclasses.replace(from_hf_dict(FAMILY_CONFIGS[family]), scan_layers=scan_layers)
    return create_model(cfg, seed=seed)


def outputs_both_ways(graphdef):
    """(read at COLUMNS, read at RANGE, full forward) in one compiled program."""

    def run(params):
        def at(columns):
            return apply(graphdef, params, IDS, POSITIONS, SEGMENTS, read_columns=columns)[0]

        return at(COLUMNS), at(RANGE), at(None)

    return jax.jit(run)


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_read_columns_equal_the_full_forward_there_in_every_family(family):
    """Sliding windows (mistral, gemma2: the mask rows are taken with the queries), soft-caps
    and sandwich norms (gemma2), QK-norm (qwen3), learned positions (gpt2), rope scaling and
    tied embeddings (llama_tied_rope3): each query keeps its own position and mask row."""
    graphdef, params = model(family)
    picked, ranged, full = outputs_both_ways(graphdef)(params)
    assert picked.shape == (ROWS, 3, full.shape[-1]) and ranged.shape == (ROWS, 4, full.shape[-1])
    np.testing.assert_allclose(picked, take_columns(full, COLUMNS), atol=2e-6, rtol=2e-6)
    np.testing.assert_allclose(ranged, full[:, RANGE], atol=2e-6, rtol=2e-6)
    assert float(jnp.abs(picked[:, 0] - picked[:, 1]).max()) > 1e-3  # columns do differ


@pytest.mark.parametrize("scan_layers", [False, True])
def test_read_columns_give_the_gradient_of_the_full_forward(scan_layers):
    """Keys and values of the unread columns still carry gradient (the read ones attend to
    them); a scalar head, as a reward model reads its last token."""
    cfg = dataclasses.replace(from_hf_dict(FAMILY_CONFIGS["llama"]), scan_layers=scan_layers)
    graphdef, params = create_model(cfg, head="scalar", seed=5)
    weights = jnp.asarray([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [2.0, 0.7, 1.1]])

    def loss(params, read):
        if read:
            scores, _ = apply(graphdef, params, IDS, POSITIONS, SEGMENTS, read_columns=COLUMNS)
        else:
            scores = take_columns(apply(graphdef, params, IDS, POSITIONS, SEGMENTS)[0], COLUMNS)
        return jnp.sum(weights * scores)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    flat, flat_full = (
        jnp.concatenate([g.ravel() for g in jax.tree.leaves(grad(params, read))])
        for read in (True, False)
    )
    scale = float(jnp.abs(flat_full).max())
    assert scale > 0
    np.testing.assert_allclose(flat, flat_full, atol=1e-5 * scale)


def test_a_prefill_reading_its_last_column_fills_the_same_cache():
    """The sampler's prefill: every column's keys and values go to the cache, the last
    column's output picks the first new token."""
    graphdef, params = model("mistral")  # a sliding window too

    def prefill(params, read):
        cache = KVCache.init(from_hf_dict(FAMILY_CONFIGS["mistral"]), ROWS, WIDTH + 4)
        return apply(graphdef, params, IDS, POSITIONS, SEGMENTS, cache, 0, read_columns=read)

    run = jax.jit(lambda params: (prefill(params, slice(WIDTH - 1, None)), prefill(params, None)))
    (last, cache), (full, full_cache) = run(params)
    np.testing.assert_allclose(last[:, 0], full[:, -1], atol=2e-6, rtol=2e-6)
    for got, want in zip(jax.tree.leaves(cache), jax.tree.leaves(full_cache), strict=True):
        np.testing.assert_array_equal(got, want)

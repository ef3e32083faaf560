"""The forward pass on a mesh equals the single-device result (8 simulated CPU devices)."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jalign.models import apply, create_model, from_hf_dict
from jalign.sharding import make_mesh, param_shardings, shard_batch

CFG = from_hf_dict(
    dict(
        model_type="qwen2",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
)


def _batch():
    rng = np.random.default_rng(0)
    seg = np.ones((8, 12), np.int32)
    seg[1, 9:] = 0  # right padding
    seg[2, :4] = 0  # left padding
    pos = np.maximum(np.cumsum(seg, axis=1) - 1, 0).astype(np.int32)
    return {
        "input_ids": rng.integers(0, 64, (8, 12)).astype(np.int32),
        "positions": pos,
        "segment_ids": seg,
    }


@pytest.mark.parametrize("spec", ["data=2,fsdp=2,tensor=2", "data=1,fsdp=1,tensor=8"])
def test_sharded_forward_matches_single_device(spec):
    graphdef, params = create_model(CFG, seed=3)
    batch = _batch()
    forward = jax.jit(
        lambda p, b: apply(graphdef, p, b["input_ids"], b["positions"], b["segment_ids"])[0]
    )
    expected = np.asarray(forward(params, batch))
    mesh = make_mesh(spec)
    sharded = jax.device_put(params, param_shardings(params, mesh))
    assert sharded["layers"][0]["mlp"]["up_proj"]["kernel"].sharding.spec == P("fsdp", "tensor")
    got = np.asarray(forward(sharded, shard_batch(batch, mesh)))
    np.testing.assert_allclose(got, expected, atol=1e-5)

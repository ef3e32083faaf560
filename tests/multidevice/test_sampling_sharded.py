"""The sharded sampler on 8 simulated CPU devices gives the single-device completions.

The repository's conftest.py gives every test process 8 simulated CPU devices.
"""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jalign.errors import JalignError
from jalign.models import create_model, from_hf_dict
from jalign.sampling import (
    SamplingParams,
    cache_sharding,
    generate,
    make_prompt_batch,
)

pytestmark = pytest.mark.skipif(
    jax.device_count() != 8, reason="needs 8 devices (conftest.py sets XLA_FLAGS for that)"
)

CFG = from_hf_dict(
    dict(
        model_type="llama",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        eos_token_id=3,
    )
)
PROMPTS = [[5, 9, 17], [11, 4, 33, 8, 60, 21, 7], [40, 2, 19, 25, 6], [8]]
GREEDY = SamplingParams(temperature=0, max_new_tokens=12)
SAMPLED = SamplingParams(temperature=1.0, top_k=16, top_p=0.9, n=2, max_new_tokens=12)
MESHES = {"data2_fsdp2_tensor2": (2, 2, 2), "tensor8": (1, 1, 8)}


def _mesh(shape, axis_type=AxisType.Auto):
    return jax.make_mesh(shape, ("data", "fsdp", "tensor"), axis_types=(axis_type,) * 3)


def _shard_params(params, mesh):
    """Matrices split [in, out] over (fsdp, tensor) where the sizes divide; vectors replicated."""

    def place(x):
        spec = [None] * x.ndim
        if x.ndim == 2:
            for dim, axis in enumerate(("fsdp", "tensor")):
                if x.shape[dim] % mesh.shape[axis] == 0:
                    spec[dim] = axis
        return jax.device_put(x, NamedSharding(mesh, P(*spec)))

    return jax.tree.map(place, params)


@pytest.fixture(scope="module")
def model():
    graphdef, params = create_model(CFG, seed=3)
    return graphdef, jax.tree.map(lambda x: x * 8 if x.ndim == 2 else x, params)


@pytest.fixture(scope="module")
def single_device(model):
    graphdef, params = model
    prompts = make_prompt_batch(PROMPTS)
    key = jax.random.key(0)
    return {s: generate(graphdef, params, prompts, s, key) for s in (GREEDY, SAMPLED)}


@pytest.mark.parametrize("mesh_shape", MESHES.values(), ids=MESHES.keys())
def test_sharded_sampler_matches_single_device(model, single_device, mesh_shape):
    graphdef, params = model
    mesh = _mesh(mesh_shape)
    sharded_params = _shard_params(params, mesh)
    assert sharded_params["layers"][0]["mlp"]["up_proj"]["kernel"].sharding.spec == P(
        "fsdp", "tensor"
    )
    prompts = make_prompt_batch(PROMPTS)
    # Sampled (n=2, truncated) on one mesh only: each setting is one more compiled program.
    settings = (GREEDY, SAMPLED) if mesh_shape == (2, 2, 2) else (GREEDY,)
    for sampling in settings:
        reference = single_device[sampling]
        out = generate(graphdef, sharded_params, prompts, sampling, jax.random.key(0), mesh=mesh)
        np.testing.assert_array_equal(out.tokens, reference.tokens)
        np.testing.assert_array_equal(out.mask, reference.mask)
        np.testing.assert_allclose(out.logprobs, reference.logprobs, atol=1e-5)
        rows = NamedSharding(mesh, P(("data", "fsdp"), None))
        assert out.tokens.sharding.is_equivalent_to(rows, 2)
        assert out.logprobs.sharding.is_equivalent_to(rows, 2)
    assert float(single_device[GREEDY].mask.sum()) > 20


def test_cache_sharding_splits_kv_heads_only_when_divisible():
    split = cache_sharding(_mesh((2, 2, 2)), CFG)
    assert split.k[0].spec == P(("data", "fsdp"), "tensor", None, None)
    assert split.positions.spec == P(("data", "fsdp"), None)
    replicated = cache_sharding(_mesh((1, 1, 8)), CFG)
    assert replicated.v[1].spec == P(("data", "fsdp"), None, None, None)


def test_rows_must_divide_over_data_and_fsdp(model):
    graphdef, params = model
    mesh = _mesh((2, 2, 2))
    with pytest.raises(JalignError, match=r"batch 3 x sampling.n=1 rows .* multiple of 4"):
        generate(graphdef, params, make_prompt_batch(PROMPTS[:3]), GREEDY, mesh=mesh)


def test_explicit_mesh_axes_are_refused(model):
    graphdef, params = model
    mesh = _mesh((2, 2, 2), AxisType.Explicit)
    with pytest.raises(JalignError, match=r"not AxisType\.Auto"):
        generate(graphdef, params, make_prompt_batch(PROMPTS), GREEDY, mesh=mesh)

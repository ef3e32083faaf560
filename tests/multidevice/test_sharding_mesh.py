"""Rule shardings, shard plans, batches and constraints on meshes of 8 simulated CPU devices.

The repository's conftest.py gives every test process 8 simulated CPU devices.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jalign.errors import JalignError
from jalign.sharding import (
    batch_spec,
    constrain,
    make_mesh,
    param_shardings,
    parse_rules,
    shard_batch,
    shard_plan,
    use_mesh,
)

pytestmark = pytest.mark.skipif(
    jax.device_count() != 8, reason="needs 8 simulated devices: run in its own pytest process"
)

# Tiny params at common.md's paths, every dimension divisible by 8: V=64, D=16, H*hd=16,
# KV*hd=8, F=32. Values are distinct so a misplaced slice would show.
SHAPES = {
    "embed/embedding": (64, 16),
    "layers/0/attn/q_proj/kernel": (16, 16),
    "layers/0/attn/q_proj/bias": (16,),
    "layers/0/attn/k_proj/kernel": (16, 8),
    "layers/0/attn/o_proj/kernel": (16, 16),
    "layers/0/attn_norm/scale": (16,),
    "layers/0/mlp/gate_proj/kernel": (16, 32),
    "layers/0/mlp/down_proj/kernel": (32, 16),
    "final_norm/scale": (16,),
    "lm_head/kernel": (16, 64),
}
# What the default rules give each (before mesh sizes are known).
RULE_SPECS = {
    "embed/embedding": P("tensor", "fsdp"),
    "layers/0/attn/q_proj/kernel": P("fsdp", "tensor"),
    "layers/0/attn/q_proj/bias": P("tensor"),
    "layers/0/attn/k_proj/kernel": P("fsdp", "tensor"),
    "layers/0/attn/o_proj/kernel": P("tensor", "fsdp"),
    "layers/0/attn_norm/scale": P(),
    "layers/0/mlp/gate_proj/kernel": P("fsdp", "tensor"),
    "layers/0/mlp/down_proj/kernel": P("tensor", "fsdp"),
    "final_norm/scale": P(),
    "lm_head/kernel": P("fsdp", "tensor"),
}
# Per-device shard shapes worked out by hand for each mesh (data, fsdp, tensor).
SHARD_SHAPES = {
    (2, 2, 2): {
        "embed/embedding": (32, 8),
        "layers/0/attn/q_proj/kernel": (8, 8),
        "layers/0/attn/q_proj/bias": (8,),
        "layers/0/attn/k_proj/kernel": (8, 4),
        "layers/0/attn/o_proj/kernel": (8, 8),
        "layers/0/attn_norm/scale": (16,),
        "layers/0/mlp/gate_proj/kernel": (8, 16),
        "layers/0/mlp/down_proj/kernel": (16, 8),
        "final_norm/scale": (16,),
        "lm_head/kernel": (8, 32),
    },
    (1, 1, 8): {
        "embed/embedding": (8, 16),
        "layers/0/attn/q_proj/kernel": (16, 2),
        "layers/0/attn/q_proj/bias": (2,),
        "layers/0/attn/k_proj/kernel": (16, 1),
        "layers/0/attn/o_proj/kernel": (2, 16),
        "layers/0/attn_norm/scale": (16,),
        "layers/0/mlp/gate_proj/kernel": (16, 4),
        "layers/0/mlp/down_proj/kernel": (4, 16),
        "final_norm/scale": (16,),
        "lm_head/kernel": (16, 8),
    },
    (4, 2, 1): {  # data=-1 with fsdp=2, tensor=1
        "embed/embedding": (64, 8),
        "layers/0/attn/q_proj/kernel": (8, 16),
        "layers/0/attn/q_proj/bias": (16,),
        "layers/0/attn/k_proj/kernel": (8, 8),
        "layers/0/attn/o_proj/kernel": (16, 8),
        "layers/0/attn_norm/scale": (16,),
        "layers/0/mlp/gate_proj/kernel": (8, 32),
        "layers/0/mlp/down_proj/kernel": (32, 8),
        "final_norm/scale": (16,),
        "lm_head/kernel": (8, 64),
    },
}
MESHES = {
    "data=2,fsdp=2,tensor=2": (2, 2, 2),
    "data=1,fsdp=1,tensor=8": (1, 1, 8),
    "data=-1,fsdp=2,tensor=1": (4, 2, 1),
}


def host_params() -> dict:
    """Nested dict (int layer keys) of float32 numpy arrays with distinct values."""
    tree: dict = {}
    for path, shape in SHAPES.items():
        *parents, name = [int(k) if k.isdigit() else k for k in path.split("/")]
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[name] = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    return tree


def leaf(tree: dict, path: str):
    for key in path.split("/"):
        tree = tree[int(key) if key.isdigit() else key]
    return tree


@pytest.mark.parametrize("spec", MESHES)
def test_device_put_with_rule_shardings_splits_as_planned(spec):
    mesh = make_mesh(spec)
    assert tuple(mesh.shape.values()) == MESHES[spec]
    params = host_params()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    placed = jax.device_put(params, param_shardings(abstract, mesh))
    for path, expected in SHARD_SHAPES[MESHES[spec]].items():
        array = leaf(placed, path)
        assert array.sharding.spec == RULE_SPECS[path], path
        assert len(array.addressable_shards) == 8
        assert {s.data.shape for s in array.addressable_shards} == {expected}, path
        # Each device holds exactly its slice of the host array.
        for shard in array.addressable_shards:
            np.testing.assert_array_equal(shard.data, leaf(params, path)[shard.index])
    # The plan's per-device bytes are the hand-computed shard sizes (float32).
    plan = shard_plan(abstract, mesh)
    assert plan.bytes_per_device == sum(
        4 * math.prod(shape) for shape in SHARD_SHAPES[MESHES[spec]].values()
    )
    assert plan.model_bytes == sum(4 * math.prod(shape) for shape in SHAPES.values())


def test_user_rule_on_a_real_mesh():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    params = host_params()
    rules = parse_rules([("lm_head/kernel$", [None, ["data", "fsdp", "tensor"]])])
    placed = jax.device_put(params, param_shardings(params, mesh, rules))
    head = placed["lm_head"]["kernel"]
    assert head.sharding.spec == P(None, ("data", "fsdp", "tensor"))
    assert {s.data.shape for s in head.addressable_shards} == {(16, 8)}


def test_nnx_state_goes_onto_the_mesh():
    def linear(n_in: int, n_out: int) -> dict:
        return {
            "kernel": nnx.Param(np.ones((n_in, n_out), np.float32)),
            "bias": nnx.Param(np.ones((n_out,), np.float32)),
        }

    state = nnx.State({"up_proj": linear(16, 32), "down_proj": linear(32, 16)})
    placed = jax.device_put(state, param_shardings(state, make_mesh("data=2,fsdp=2,tensor=2")))
    up, down = placed["up_proj"]["kernel"].get_value(), placed["down_proj"]["kernel"].get_value()
    assert isinstance(placed["up_proj"]["kernel"], nnx.Param)
    assert up.sharding.spec == P("fsdp", "tensor")
    assert {s.data.shape for s in up.addressable_shards} == {(8, 16)}
    assert down.sharding.spec == P("tensor", "fsdp")
    assert placed["up_proj"]["bias"].get_value().sharding.spec == P("tensor")
    assert placed["down_proj"]["bias"].get_value().sharding.spec == P()


def test_shard_batch_splits_rows_over_data_and_fsdp():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    ids = np.arange(32, dtype=np.int32).reshape(8, 4)
    batch = shard_batch({"input_ids": ids, "loss_mask": np.ones((8, 4), np.float32)}, mesh)
    assert batch["input_ids"].sharding.spec == batch_spec() == P(("data", "fsdp"))
    shards = batch["input_ids"].addressable_shards
    assert {s.data.shape for s in shards} == {(2, 4)}
    # The 2 devices of each (data, fsdp) cell share rows; tensor replicates.
    assert sorted({int(s.data[0, 0]) for s in shards}) == [0, 8, 16, 24]
    with pytest.raises(
        JalignError, match=r"'input_ids' has shape \(6, 4\): its rows must divide by the 4"
    ):
        shard_batch({"input_ids": np.zeros((6, 4), np.int32)}, mesh)
    # A stack of 3 steps' batches: the steps stay whole on every device, the rows split.
    stacked = shard_batch({"input_ids": np.stack([ids, ids + 100, ids + 200])}, mesh, row_axis=1)
    assert stacked["input_ids"].sharding.spec == batch_spec(row_axis=1) == P(None, ("data", "fsdp"))
    shards = stacked["input_ids"].addressable_shards
    assert {s.data.shape for s in shards} == {(3, 2, 4)}
    assert sorted({tuple(s.data[:, 0, 0].tolist()) for s in shards})[0] == (0, 100, 200)
    with pytest.raises(JalignError, match=r"shape \(2, 6, 4\): its rows must divide by the 4"):
        shard_batch({"input_ids": np.zeros((2, 6, 4), np.int32)}, mesh, row_axis=1)


def test_constrain_under_use_mesh_shards_activations_and_retraces():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    step = jax.jit(lambda x: constrain(jnp.tanh(x), batch_spec()))
    x = jnp.ones((8, 3, 16))
    plain = step(x)  # traced without a mesh: no constraint, one device
    assert len(plain.sharding.device_set) == 1
    with use_mesh(mesh):
        out = step(x)  # the mesh is part of the cache key: traced again, constrained
        eager = constrain(x, P(None, None, "tensor"))
        with pytest.raises(JalignError, match=r"dimension 0 \(size 6\) of an activation"):
            step(jnp.ones((6, 3, 16)))
    assert out.sharding.spec == P(("data", "fsdp"))
    assert {s.data.shape for s in out.addressable_shards} == {(2, 3, 16)}
    np.testing.assert_allclose(np.asarray(out), np.tanh(1.0) * np.ones((8, 3, 16)), rtol=1e-6)
    assert {s.data.shape for s in eager.addressable_shards} == {(8, 3, 8)}

"""Meshes, partition rules and shard plans on 8 simulated CPU devices."""

import logging

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jalign.errors import JalignError
from jalign.models import abstract_model, from_hf_dict
from jalign.sharding import (
    format_shard_plan,
    make_mesh,
    param_shardings,
    parse_mesh_spec,
    parse_rules,
    place,
    resolve_mesh_sizes,
    shard_batch,
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
    )
)


def _specs(placements):
    return {p.path: p.spec for p in placements}


def test_mesh_spec_parsing_and_wildcard():
    assert parse_mesh_spec("data=2,fsdp=-1") == {"data": 2, "fsdp": -1, "tensor": 1}
    assert resolve_mesh_sizes({"data": 2, "fsdp": -1, "tensor": 2}, 8) == {
        "data": 2,
        "fsdp": 2,
        "tensor": 2,
    }
    mesh = make_mesh("data=-1,fsdp=1,tensor=2")
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("data=3,fsdp=1,tensor=1", "needs 3 devices but 8 are available"),
        ("data=-1,fsdp=-1", "only one axis may have size -1"),
        ("data=two", "size of axis 'data' is 'two'"),
        ("data=3,fsdp=-1", "does not divide"),
    ],
)
def test_bad_mesh_specs(spec, message):
    with pytest.raises(JalignError, match=message):
        make_mesh(spec)


def test_default_rules_and_user_override():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    _, params = abstract_model(CFG)
    specs = _specs(place(params, mesh))
    assert specs["layers/0/attn/q_proj/kernel"] == P("fsdp", "tensor")
    assert specs["layers/1/mlp/down_proj/kernel"] == P("tensor", "fsdp")
    assert specs["embed/embedding"] == P("tensor", "fsdp")
    assert specs["final_norm/scale"] == P()
    user = parse_rules([(r"q_proj/kernel$", [None, ["fsdp", "tensor"]])])
    overridden = _specs(place(params, mesh, user))
    assert overridden["layers/0/attn/q_proj/kernel"] == P(None, ("fsdp", "tensor"))
    # Rules the user did not override keep their defaults.
    assert overridden["layers/0/attn/k_proj/kernel"] == P("fsdp", "tensor")


def test_scanned_stack_gets_leading_layer_axis():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    _, params = abstract_model(CFG.replace(scan_layers=True))
    specs = _specs(place(params, mesh))
    assert specs["layers/attn/q_proj/kernel"] == P(None, "fsdp", "tensor")


def test_unmatched_parameters_are_replicated_and_reported(caplog):
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    params = {"mystery": {"weight": jax.ShapeDtypeStruct((8, 8), np.float32)}}
    with caplog.at_level(logging.WARNING):
        placements = place(params, mesh)
    assert placements[0].spec == P() and placements[0].rule is None
    assert "mystery/weight" in caplog.text


def test_rule_errors_name_the_problem():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    _, params = abstract_model(CFG)
    with pytest.raises(
        JalignError, match=r"names mesh axis 'expert'.*mesh axes: data, fsdp, tensor"
    ):
        place(params, mesh, parse_rules([("q_proj/kernel$", ["expert", None])]))
    odd = from_hf_dict(
        dict(
            model_type="llama",
            vocab_size=30,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
        )
    )
    with pytest.raises(
        JalignError,
        match=r"embed/embedding \(shape \(30, 32\)\).*dimension 30 is not divisible by 8 \(tensor=8\)",
    ):
        place(abstract_model(odd)[1], make_mesh("data=1,fsdp=1,tensor=8"))
    with pytest.raises(JalignError, match="does not compile"):
        parse_rules([("q_proj[", [None])])


@pytest.mark.parametrize("spec", ["data=2,fsdp=2,tensor=2", "data=1,fsdp=1,tensor=8"])
def test_device_put_carries_rule_shardings(spec):
    mesh = make_mesh(spec)
    _, abstract = abstract_model(CFG)
    params = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), abstract)
    placed = jax.device_put(params, param_shardings(abstract, mesh))
    q = placed["layers"][0]["attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == P("fsdp", "tensor")
    expected = (32 // mesh.shape["fsdp"], 32 // mesh.shape["tensor"])
    assert {s.data.shape for s in q.addressable_shards} == {expected}


def test_shard_plan_bytes_per_device():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    _, params = abstract_model(CFG)
    text = format_shard_plan(params, mesh)
    # q_proj kernel 32x32 fp32 over fsdp=2 x tensor=2 -> 16x16x4 bytes = 1 KiB per device.
    line = next(
        line for line in text.splitlines() if line.startswith("layers/0/attn/q_proj/kernel")
    )
    assert "1.0 KiB" in line and "(fsdp, tensor)" in line
    total = sum(np.prod(s.shape) * 4 for s in jax.tree.leaves(params))
    per_device = sum(
        np.prod(p.shape)
        * 4
        // np.prod(
            [mesh.shape[a] for e in p.spec if e for a in ((e,) if isinstance(e, str) else e)]
        )
        for p in place(params, mesh)
    )
    assert f"per device: {per_device / 1024:.1f} KiB" in text
    assert f"model: {total / 1024:.1f} KiB" in text


def test_shard_batch_splits_rows_and_rejects_indivisible():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    batch = shard_batch({"input_ids": np.zeros((8, 4), np.int32)}, mesh)
    assert {s.data.shape for s in batch["input_ids"].addressable_shards} == {(2, 4)}
    with pytest.raises(JalignError, match="not divisible by the 4 data x fsdp shards"):
        shard_batch({"input_ids": np.zeros((6, 4), np.int32)}, mesh)

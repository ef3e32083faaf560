"""Mesh specs, partition rules, shard plans and constraints, without needing several devices.

Rules are decided on `abstract_mesh`es (no devices), so these tests hold on any device count;
placing arrays on real meshes is tested in tests/multidevice/test_sharding_mesh.py.
"""

import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jalign.errors import JalignError
from jalign.models import SUPPORTED_MODEL_TYPES, abstract_model, from_hf_dict
from jalign.sharding import (
    FAMILY_RULES,
    UNMATCHED,
    abstract_mesh,
    batch_spec,
    constrain,
    format_shard_plan,
    make_mesh,
    parse_mesh_spec,
    parse_rules,
    parse_spec,
    path_string,
    place,
    resolve_mesh_sizes,
    shard_plan,
)

MESH = abstract_mesh("data=2,fsdp=2,tensor=2", 8)
f32 = np.float32

# common.md's parameter paths with tiny shapes (V=64, D=16, H*hd=16, KV*hd=8, hd=8, F=32),
# each with the spec the defaults must give it.
UNSCANNED = {
    "embed/embedding": ((64, 16), P("tensor", "fsdp")),
    "pos_embed/embedding": ((16, 16), P()),
    "layers/1/attn/q_proj/kernel": ((16, 16), P("fsdp", "tensor")),
    "layers/1/attn/q_proj/bias": ((16,), P("tensor")),
    "layers/1/attn/k_proj/kernel": ((16, 8), P("fsdp", "tensor")),
    "layers/1/attn/v_proj/kernel": ((16, 8), P("fsdp", "tensor")),
    "layers/1/attn/v_proj/bias": ((8,), P("tensor")),
    "layers/1/attn/o_proj/kernel": ((16, 16), P("tensor", "fsdp")),
    "layers/1/attn/q_norm/scale": ((8,), P()),
    "layers/1/attn_norm/scale": ((16,), P()),
    "layers/1/attn_norm/bias": ((16,), P()),
    "layers/1/post_attn_norm/scale": ((16,), P()),
    "layers/1/mlp_norm/scale": ((16,), P()),
    "layers/1/post_mlp_norm/scale": ((16,), P()),
    "layers/1/mlp/gate_proj/kernel": ((16, 32), P("fsdp", "tensor")),
    "layers/1/mlp/up_proj/kernel": ((16, 32), P("fsdp", "tensor")),
    "layers/1/mlp/up_proj/bias": ((32,), P("tensor")),
    "layers/1/mlp/down_proj/kernel": ((32, 16), P("tensor", "fsdp")),
    "layers/1/mlp/down_proj/bias": ((16,), P()),
    "final_norm/scale": ((16,), P()),
    "lm_head/kernel": ((16, 64), P("fsdp", "tensor")),
    "score/kernel": ((16, 1), P()),
    "score/bias": ((1,), P()),
}
# A scanned stack (L=2): no layer index, a leading [L] axis, so the spec gains a leading None.
SCANNED = {
    "layers/attn/q_proj/kernel": ((2, 16, 16), P(None, "fsdp", "tensor")),
    "layers/attn/q_proj/bias": ((2, 16), P(None, "tensor")),
    "layers/attn/o_proj/kernel": ((2, 16, 16), P(None, "tensor", "fsdp")),
    "layers/mlp/down_proj/kernel": ((2, 32, 16), P(None, "tensor", "fsdp")),
    "layers/attn_norm/scale": ((2, 16), P()),
    "lm_head/kernel": ((16, 64), P("fsdp", "tensor")),
}


def nested(flat: dict[str, tuple]) -> dict:
    """{"a/0/b": (shape, dtype)} -> {"a": {0: {"b": ShapeDtypeStruct}}} (int keys for layers)."""
    tree: dict = {}
    for path, (shape, dtype) in flat.items():
        *parents, name = [int(k) if k.isdigit() else k for k in path.split("/")]
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[name] = jax.ShapeDtypeStruct(shape, dtype)
    return tree


def tree_of(table: dict[str, tuple], dtype=f32) -> dict:
    return nested({path: (shape, dtype) for path, (shape, _) in table.items()})


def specs(params, *args, **kwargs) -> dict[str, P]:
    return {p.path: p.spec for p in place(params, *args, **kwargs).params}


# --- meshes ---------------------------------------------------------------------------------


def test_mesh_spec_string_and_mapping_keep_order_and_add_required_axes():
    assert list(parse_mesh_spec("tensor=2, data=-1").items()) == [
        ("tensor", 2),
        ("data", -1),
        ("fsdp", 1),
    ]
    assert parse_mesh_spec({"data": 2, "fsdp": 2, "tensor": 2, "expert": 1}) == {
        "data": 2,
        "fsdp": 2,
        "tensor": 2,
        "expert": 1,
    }
    assert resolve_mesh_sizes({"data": -1, "fsdp": 2, "tensor": 2}, 16) == {
        "data": 4,
        "fsdp": 2,
        "tensor": 2,
    }
    mesh = abstract_mesh("data=-1,tensor=4", 64)
    assert mesh.axis_names == ("data", "tensor", "fsdp")
    assert dict(mesh.shape) == {"data": 16, "tensor": 4, "fsdp": 1}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("data=3,fsdp=1,tensor=2", "mesh data=3, fsdp=1, tensor=2 needs 6 devices but 8 are"),
        ("data=-1,fsdp=-1", "only one axis may have size -1, got data, fsdp"),
        ("data=3,fsdp=-1", "the other axes use 3 devices, which does not divide the 8 devices"),
        ("data=two", "size of axis 'data' is 'two'; allowed: an int >= 1, or -1"),
        ("data=0", "size of axis 'data' is '0'"),
        ("data=2.0", "size of axis 'data' is '2.0'"),
        ("data2", "'data2' is not of the form axis=size"),
        ("data=2,data=4", "axis 'data' appears twice"),
        ("2=data", "axis name '2' must be an identifier"),
    ],
)
def test_bad_mesh_specs_name_the_problem(spec, message):
    with pytest.raises(JalignError, match=message):
        abstract_mesh(spec, 8)


def test_make_mesh_counts_the_devices_it_is_given():
    one = jax.devices()[:1]
    mesh = make_mesh("data=-1", devices=one)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    with pytest.raises(JalignError, match=r"needs 2 devices but 1 are available"):
        make_mesh("data=2", devices=one)


# --- specs and rules from config --------------------------------------------------------------


def test_parse_spec_forms():
    assert parse_spec(["fsdp", None], "r") == P("fsdp", None)
    assert parse_spec((["data", "fsdp"], "tensor"), "r") == P(("data", "fsdp"), "tensor")
    assert parse_spec(None, "r") == P()
    assert parse_spec(P("tensor"), "r") == P("tensor")
    with pytest.raises(JalignError, match=r"rules\[0\]: spec 'tensor' must be a list"):
        parse_spec("tensor", "rules[0]")
    with pytest.raises(JalignError, match=r"spec entry 3 must be an axis name"):
        parse_spec(["fsdp", 3], "rules[0]")


def test_parse_rules_checks_pairs_and_regexes():
    assert parse_rules([("q_proj", ["fsdp"]), ["lm_head", None]]) == [
        ("q_proj", P("fsdp")),
        ("lm_head", P()),
    ]
    assert parse_rules(None) == []
    with pytest.raises(JalignError, match=r"sharding.rules\[1\]: regex 'q_proj\[' does not"):
        parse_rules([("k_proj", None), ("q_proj[", None)])
    with pytest.raises(JalignError, match=r"sharding.rules\[0\]: .* must be a pair"):
        parse_rules([("q_proj", ["fsdp"], "extra")])


def test_path_string_joins_dict_attr_and_sequence_keys():
    class Pair(NamedTuple):
        kernel: np.ndarray
        bias: np.ndarray

    tree = {"layers": [{"q_proj": Pair(np.zeros(1), np.zeros(1))}]}
    paths = [path_string(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    assert paths == ["layers/0/q_proj/kernel", "layers/0/q_proj/bias"]


# --- rules ----------------------------------------------------------------------------------


def test_default_rules_cover_the_conventional_paths():
    assert specs(tree_of(UNSCANNED), MESH) == {p: s for p, (_, s) in UNSCANNED.items()}
    assert specs(tree_of(SCANNED), MESH) == {p: s for p, (_, s) in SCANNED.items()}


def test_user_rule_overrides_the_default_for_the_same_parameter():
    params = tree_of(UNSCANNED)
    user = parse_rules([(r"q_proj/kernel$", [None, ["fsdp", "tensor"]])])
    got = specs(params, MESH, user)
    assert UNSCANNED["layers/1/attn/q_proj/kernel"][1] == P("fsdp", "tensor")  # the default
    assert got["layers/1/attn/q_proj/kernel"] == P(None, ("fsdp", "tensor"))
    assert got["layers/1/attn/k_proj/kernel"] == P("fsdp", "tensor")  # not overridden
    # Among user rules the first match wins too.
    first = parse_rules([("q_proj/kernel$", ["tensor"]), ("proj/kernel$", [None, "fsdp"])])
    got = specs(params, MESH, first)
    assert got["layers/1/attn/q_proj/kernel"] == P("tensor")
    assert got["layers/1/attn/k_proj/kernel"] == P(None, "fsdp")


def test_family_rules_sit_between_user_rules_and_defaults(monkeypatch):
    monkeypatch.setitem(FAMILY_RULES, "toy", ((r"o_proj/kernel$", P("fsdp", "tensor")),))
    params = tree_of(UNSCANNED)
    assert specs(params, MESH, family="toy")["layers/1/attn/o_proj/kernel"] == P("fsdp", "tensor")
    assert specs(params, MESH)["layers/1/attn/o_proj/kernel"] == P("tensor", "fsdp")
    user = parse_rules([("o_proj/kernel$", None)])
    assert specs(params, MESH, user, family="toy")["layers/1/attn/o_proj/kernel"] == P()


def test_short_specs_shift_only_inside_a_scanned_stack():
    params = tree_of(SCANNED)
    user = parse_rules([("lm_head/kernel$", ["tensor"]), ("q_proj/kernel$", ["tensor", None])])
    got = specs(params, MESH, user)
    assert got["lm_head/kernel"] == P("tensor")  # no layer stack: taken as written
    assert got["layers/attn/q_proj/kernel"] == P(None, "tensor", None)
    full = parse_rules([("q_proj/kernel$", ["fsdp", None, "tensor"])])  # already full rank
    assert specs(params, MESH, full)["layers/attn/q_proj/kernel"] == P("fsdp", None, "tensor")


def test_unmatched_parameters_are_replicated_listed_and_logged(caplog):
    params = {**tree_of(UNSCANNED), "mystery": {"weight": jax.ShapeDtypeStruct((8, 8), f32)}}
    with caplog.at_level(logging.WARNING, logger="jalign.sharding.rules"):
        placed = place(params, MESH, parse_rules([("no_such_param", ["fsdp"])]))
    assert placed.unmatched == ["mystery/weight"]
    (mystery,) = [p for p in placed.params if p.path == "mystery/weight"]
    assert mystery.spec == P() and mystery.rule is None
    assert placed.shardings["mystery"]["weight"].spec == P()
    assert "1 parameter(s) match no partition rule and are replicated: mystery/weight" in (
        caplog.text
    )
    assert "sharding rule 'no_such_param' matched no parameter of this model" in caplog.text


def test_shardings_mirror_the_params_structure():
    params = tree_of(UNSCANNED)
    shardings = place(params, MESH).shardings
    assert jax.tree.structure(shardings) == jax.tree.structure(params)
    assert shardings["layers"][1]["mlp"]["down_proj"]["kernel"].spec == P("tensor", "fsdp")
    assert shardings["layers"][1]["mlp"]["down_proj"]["kernel"].mesh == MESH


def test_nnx_state_paths_skip_the_variable_value():
    class Block(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.q_proj = nnx.Linear(16, 8, rngs=rngs)
            self.attn_norm = nnx.RMSNorm(16, rngs=rngs)

    state = nnx.state(nnx.eval_shape(lambda: Block(nnx.Rngs(0))))
    placed = place(state, MESH)
    assert {p.path: p.spec for p in placed.params} == {
        "attn_norm/scale": P(),
        "q_proj/bias": P("tensor"),
        "q_proj/kernel": P("fsdp", "tensor"),
    }
    kernel = placed.shardings["q_proj"]["kernel"]
    assert isinstance(kernel, nnx.Param) and kernel.get_value().spec == P("fsdp", "tensor")
    assert jax.tree.structure(placed.shardings) == jax.tree.structure(state)


def test_rule_naming_a_missing_axis_is_refused():
    with pytest.raises(
        JalignError,
        match=r"partition rule 'q_proj/kernel\$' -> \[expert, None\] names mesh axis 'expert', "
        r"which the mesh lacks; mesh axes: data, fsdp, tensor",
    ):
        place(tree_of(UNSCANNED), MESH, parse_rules([("q_proj/kernel$", ["expert", None])]))
    with pytest.raises(JalignError, match=r"uses mesh axis 'fsdp' twice"):
        place(tree_of(UNSCANNED), MESH, parse_rules([("q_proj/kernel$", ["fsdp", "fsdp"])]))


def test_indivisible_dimension_names_path_shape_spec_and_mesh():
    params = nested({"embed/embedding": ((30, 16), f32)})
    with pytest.raises(
        JalignError,
        match=r"partition rule '\(\^\|/\)embed/embedding\$' -> \[tensor, fsdp\] splits dimension "
        r"0 \(size 30\) of embed/embedding \(shape \(30, 16\)\) into 8 parts \(tensor=8\), which "
        r"does not divide it \(mesh data=1, fsdp=1, tensor=8\)\. Add a sharding.rules entry",
    ):
        place(params, abstract_mesh("data=1,fsdp=1,tensor=8", 8))
    # A user rule that fits fixes it.
    fixed = parse_rules([("embed/embedding$", [None, "tensor"])])
    assert specs(params, abstract_mesh("data=1,fsdp=1,tensor=8", 8), fixed) == {
        "embed/embedding": P(None, "tensor")
    }


def test_spec_longer_than_the_parameter_is_refused():
    with pytest.raises(
        JalignError,
        match=r"gives final_norm/scale \(shape \(16,\)\) 2 spec entries but it has 1 dimensions",
    ):
        place(tree_of(UNSCANNED), MESH, parse_rules([("final_norm/scale$", ["fsdp", None])]))


@pytest.mark.parametrize("family", SUPPORTED_MODEL_TYPES)
def test_every_parameter_of_every_family_matches_a_rule(family):
    """The lead's real models: no parameter falls through to 'unmatched'."""
    hf = dict(
        model_type=family,
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=False,
    )
    if family == "gpt2":
        hf.update(n_embd=32, n_layer=2, n_head=4, n_positions=64)
    for scan in (False, True):
        cfg = from_hf_dict(hf, scan_layers=scan)
        for head in ("lm", "scalar"):
            placed = place(abstract_model(cfg, head)[1], MESH, family=cfg.model_type)
            assert placed.unmatched == [], (family, scan, head)


# --- the shard plan -------------------------------------------------------------------------


def test_shard_plan_bytes_by_hand():
    params = nested(
        {
            "embed/embedding": ((64, 16), jnp.bfloat16),
            "layers/0/attn/q_proj/kernel": ((16, 16), f32),
            "layers/0/attn/q_proj/bias": ((16,), f32),
            "final_norm/scale": ((16,), f32),
            "mystery": ((3,), f32),
        }
    )
    plan = shard_plan(params, MESH)
    by_path = {e.path: e for e in plan.entries}
    # embed [64, 16] bf16 over tensor=2 x fsdp=2 -> [32, 8] = 256 x 2 B.
    assert by_path["embed/embedding"].shard_shape == (32, 8)
    assert by_path["embed/embedding"].bytes_per_device == 512
    assert by_path["embed/embedding"].bytes_total == 2048
    # q kernel [16, 16] f32 over fsdp x tensor -> [8, 8] = 256 B; bias [16] over tensor -> 32 B.
    assert by_path["layers/0/attn/q_proj/kernel"].bytes_per_device == 256
    assert by_path["layers/0/attn/q_proj/bias"].bytes_per_device == 32
    assert by_path["final_norm/scale"].bytes_per_device == 64  # replicated: all of it
    assert by_path["mystery"].rule == UNMATCHED and by_path["mystery"].bytes_per_device == 12
    assert plan.bytes_per_device == 512 + 256 + 32 + 64 + 12
    assert plan.model_bytes == 2048 + 1024 + 64 + 64 + 12
    assert plan.unmatched == ["mystery"]

    text = format_shard_plan(plan)
    lines = text.splitlines()
    header, rows = lines[0], lines[1:6]
    dtype_col = header.index("dtype")
    assert all(row[dtype_col:].startswith(("float32", "bfloat16")) for row in rows)
    assert [row.split()[0] for row in rows] == list(by_path)
    row = {line.split()[0]: line for line in rows}
    q_row = row["layers/0/attn/q_proj/kernel"]
    assert q_row.split()[1:8] == ["[16,", "16]", "float32", "[fsdp,", "tensor]", "[8,", "8]"]
    assert "256 B" in q_row and q_row.endswith("(^|/)(q|k|v)_proj/kernel$")
    assert row["mystery"].endswith(UNMATCHED)
    assert "mesh: data=2, fsdp=2, tensor=2 (8 devices)" in lines
    assert "model: 3.14 KiB (3,212 B)" in lines
    assert "per device: 876 B" in lines
    assert f"{UNMATCHED}: 1 (mystery)" in lines


# --- constraints ----------------------------------------------------------------------------


def test_constrain_without_a_mesh_returns_its_input():
    x = jnp.ones((6, 3))  # 6 rows would not divide over data x fsdp on a mesh
    assert constrain(x, batch_spec()) is x
    np.testing.assert_array_equal(jax.jit(lambda v: constrain(v * 2, batch_spec()))(x), 2 * x)

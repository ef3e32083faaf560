"""Training on a mesh of 8 simulated CPU devices gives the single-device losses."""

import jax
import numpy as np
import pytest

from jalign.losses import sft_loss
from jalign.models import create_model, from_hf_dict
from jalign.sharding import batch_sharding, make_mesh, param_shardings, shard_batch
from jalign.train.forward import target_logprobs
from jalign.train.model_setup import LoadedModel, state_shardings
from jalign.train.optimizer import OptimizerConfig, make_optimizer
from jalign.train.state import compile_step, init_train_state, make_train_step

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


def _loss(graphdef):
    def loss_fn(params, frozen, batch, rng):
        out = target_logprobs(graphdef, params, batch)
        loss, metrics, weight = sft_loss(out.logps, out.mask)
        return loss, {"metrics": metrics, "weight": weight}

    return loss_fn


def _batches(n=5, b=8, t=16):
    """The same batch n times (so the loss must fall), with uneven row lengths."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(1):
        lengths = rng.integers(6, t + 1, b)
        seg = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
        out.append(
            {
                "input_ids": rng.integers(0, 64, (b, t)).astype(np.int32),
                "positions": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)).copy(),
                "segment_ids": seg,
                "loss_mask": (seg * (np.arange(t)[None] > 2)).astype(np.float32),
            }
        )
    return out * n


def _run(mesh_spec):
    graphdef, params = create_model(CFG, seed=0)
    opt = make_optimizer(OptimizerConfig(lr=1e-2, total_steps=5))
    step = make_train_step(_loss(graphdef), opt, accum_steps=2)
    if mesh_spec is None:
        compiled, place = compile_step(step), lambda b: b
        state = init_train_state(params, opt, 0)
    else:
        mesh = make_mesh(mesh_spec)
        shardings = param_shardings(params, mesh)
        model = LoadedModel(CFG, graphdef, jax.device_put(params, shardings), shardings, None, mesh)
        state_sh = state_shardings(model, opt, None)
        state = jax.jit(lambda p: init_train_state(p, opt, 0), out_shardings=state_sh)(model.params)
        compiled = compile_step(step, state_sh, batch_sharding(mesh))
        place = lambda b: shard_batch(b, mesh)  # noqa: E731
    losses = []
    for batch in _batches():
        state, metrics = compiled(state, place(batch))
        losses.append(float(metrics["loss"]))
    return losses, state


@pytest.mark.parametrize("mesh_spec", ["data=2,fsdp=2,tensor=2", "data=1,fsdp=4,tensor=2"])
def test_sharded_training_matches_single_device(mesh_spec):
    expected, _ = _run(None)
    got, state = _run(mesh_spec)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert expected[-1] < expected[0] - 0.05  # the same batch every step: the loss falls
    q = state.params["layers"][0]["attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    mu = state.opt_state[1][0].mu["layers"][0]["attn"]["q_proj"]["kernel"]
    assert mu.sharding.spec == q.sharding.spec  # optimizer moments follow their parameter

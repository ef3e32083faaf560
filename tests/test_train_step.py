"""Pure train step: gradient accumulation equals the big batch; non-finite steps are refused;
clipping by a given global norm equals optax's; a joint step, and a scan of them, equal their
steps run apart."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tiny_runs import TINY_LLAMA

from jalign.models import apply, create_model
from jalign.train.optimizer import (
    OptimizerConfig,
    clip_by_global_norm,
    learning_rate_schedule,
    make_optimizer,
)
from jalign.train.state import (
    compile_step,
    init_train_state,
    joint_step,
    make_train_step,
    scan_steps,
)

CFG = TINY_LLAMA


def _token_mean_ce(graphdef):
    def loss_fn(params, frozen, batch, rng):
        logits, _ = apply(
            graphdef, params, batch["input_ids"], batch["positions"], batch["segment_ids"]
        )
        logp = jax.nn.log_softmax(logits[:, :-1])
        target = batch["input_ids"][:, 1:]
        nll = -jnp.take_along_axis(logp, target[..., None], -1)[..., 0]
        mask = batch["loss_mask"][:, 1:]
        weight = mask.sum()
        return (nll * mask).sum() / jnp.maximum(weight, 1.0), {"metrics": {}, "weight": weight}

    return loss_fn


def _batch(seed: int, b: int = 4, t: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, t + 1, size=b)  # uneven token counts per row
    seg = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
    return {
        "input_ids": rng.integers(0, 32, size=(b, t)).astype(np.int32),
        "positions": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)).copy(),
        "segment_ids": seg,
        "loss_mask": seg.astype(np.float32),
    }


def test_grad_accumulation_matches_big_batch():
    graphdef, params = create_model(CFG, seed=1)
    opt = make_optimizer(OptimizerConfig(lr=1e-2, total_steps=10, max_grad_norm=0.0))
    loss_fn = _token_mean_ce(graphdef)
    batch = _batch(0)
    big = jax.jit(make_train_step(loss_fn, opt, accum_steps=1))
    acc = jax.jit(make_train_step(loss_fn, opt, accum_steps=2))
    s_big, m_big = big(init_train_state(params, opt, 0), batch)
    s_acc, m_acc = acc(init_train_state(params, opt, 0), batch)
    np.testing.assert_allclose(m_big["loss"], m_acc["loss"], rtol=1e-6)
    np.testing.assert_allclose(m_big["grad_norm"], m_acc["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s_big.params), jax.tree.leaves(s_acc.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # The update is not a no-op.
    moved = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(s_big.params), strict=True)
    )
    assert moved > 1e-3


def test_joint_step_and_its_scan_equal_the_steps_apart():
    """Two models with their own optimizers and batches (PPO's policy and value) compiled as one
    program, the state donated: the same states and metrics as two separate steps. Two such
    steps as one `scan_steps` over stacked batches: the same again, step by step."""
    graphdef, params_a = create_model(CFG, seed=1)
    _, params_b = create_model(CFG, seed=2)
    loss_fn = _token_mean_ce(graphdef)
    optimizers = {"a": 1e-2, "b": 3e-3}
    steps = {
        name: make_train_step(loss_fn, make_optimizer(OptimizerConfig(lr=lr, total_steps=10)))
        for name, lr in optimizers.items()
    }

    def fresh() -> dict:  # the joint step donates its states: each run starts from copies
        return {
            name: init_train_state(
                jax.tree.map(jnp.copy, params),
                make_optimizer(OptimizerConfig(lr=optimizers[name], total_steps=10)),
                seed,
            )
            for seed, (name, params) in enumerate((("a", params_a), ("b", params_b)))
        }

    step_batches = [{"a": _batch(2), "b": _batch(3)}, {"a": _batch(4), "b": _batch(5)}]
    joint = compile_step(joint_step(steps))
    states = fresh()
    losses = {name: [] for name in steps}
    for batches in step_batches:
        states, metrics = joint(states, batches)
        for name in steps:
            losses[name].append(float(metrics[name]["loss"]))
    for name, step in steps.items():
        state = fresh()[name]
        for i, batches in enumerate(step_batches):
            state, apart = jax.jit(step)(state, batches[name])
            np.testing.assert_allclose(losses[name][i], apart["loss"], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(states[name]), jax.tree.leaves(state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), states["a"].params, params_a)
    assert max(jax.tree.leaves(moved)) > 1e-3

    stacked = jax.tree.map(lambda *xs: np.stack(xs), *step_batches)
    scanned, metrics = compile_step(scan_steps(joint_step(steps)))(fresh(), stacked)
    for name in steps:
        np.testing.assert_allclose(metrics[name]["loss"], losses[name], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(scanned[name]), jax.tree.leaves(states[name]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_nonfinite_step_keeps_state():
    graphdef, params = create_model(CFG, seed=1)
    opt = make_optimizer(OptimizerConfig(lr=1e-2, total_steps=10))

    def nan_loss(params, frozen, batch, rng):
        loss, aux = _token_mean_ce(graphdef)(params, frozen, batch, rng)
        return loss * jnp.nan, aux

    state = init_train_state(params, opt, 0)
    new_state, metrics = jax.jit(make_train_step(nan_loss, opt))(state, _batch(1))
    assert int(metrics["nonfinite"]) == 1
    assert int(new_state.step) == 0
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(new_state.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_warmup_cosine_schedule_values():
    sched = learning_rate_schedule(
        OptimizerConfig(lr=1.0, warmup_steps=4, total_steps=12, min_lr_ratio=0.1)
    )
    np.testing.assert_allclose(float(sched(2)), 0.5)
    np.testing.assert_allclose(float(sched(4)), 1.0)
    # halfway through the cosine decay: 0.1 + 0.9 * 0.5
    np.testing.assert_allclose(float(sched(8)), 0.55, rtol=1e-5)
    np.testing.assert_allclose(float(sched(12)), 0.1, rtol=1e-5)
    assert isinstance(make_optimizer(OptimizerConfig()), optax.GradientTransformation)


def test_clip_matches_optax_with_and_without_the_given_norm():
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}  # global norm 13
    norm = optax.tree.norm(grads)
    for max_norm in (1.0, 13.0, 20.0):  # clipped, at the edge, untouched
        want, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
        ours = clip_by_global_norm(max_norm)
        got, _ = ours.update(grads, ours.init(grads))
        given, _ = ours.update(grads, ours.init(grads), grad_norm=norm)
        for tree in (got, given):
            jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), tree, want)
    clipped, _ = clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    np.testing.assert_allclose(clipped["a"], [3 / 13, 4 / 13], rtol=1e-6)


def test_any_optax_optimizer_takes_a_step():
    """The step passes `grad_norm=` to the optimizer; a plain optax transformation ignores it."""
    graphdef, params = create_model(CFG, seed=1)
    opt = optax.sgd(0.5)
    state, metrics = jax.jit(make_train_step(_token_mean_ce(graphdef), opt))(
        init_train_state(params, opt, 0), _batch(0)
    )
    old, new = jax.tree.leaves(params)[0], jax.tree.leaves(state.params)[0]
    assert metrics["nonfinite"] == 0 and float(jnp.abs(new - old).max()) > 0

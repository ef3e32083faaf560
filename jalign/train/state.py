"""`TrainState` and pure train steps: `step(state, batch) -> (state, metrics)`.

A loss function has the signature

    loss_fn(params, frozen, batch, rng) -> (loss, aux)

where `aux = {"metrics": {name: scalar}, "weight": scalar}`. `loss` is a *mean* over `weight`
units (tokens for a token-mean loss, pairs for DPO, ...). Gradient accumulation over k
micro-batches weights micro-batch i by w_i / sum(w), which gives exactly the gradient of the
big-batch mean for such losses. `frozen` holds pytrees that ride along untouched (a reference
model's params, a reward model's), so they are arguments of the compiled step, never constants
baked into it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jalign.errors import JalignError

LossFn = Callable[[Any, Any, dict, jax.Array], tuple[jax.Array, dict]]
StepFn = Callable[["TrainState", dict], tuple["TrainState", dict]]


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """Everything a run needs to continue bit-for-bit: params, optimizer state, step, rng."""

    params: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array
    frozen: Any = None


def init_train_state(
    params: Any, optimizer: optax.GradientTransformation, seed: int, frozen: Any = None
) -> TrainState:
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.key_data(jax.random.key(seed)),
        frozen=frozen,
    )


def _split_micro_batches(batch: dict, accum_steps: int) -> dict:
    def split(x):
        if x.shape[0] % accum_steps:
            raise JalignError(
                f"batch size {x.shape[0]} is not divisible by grad_accum_steps={accum_steps}"
            )
        return x.reshape(accum_steps, x.shape[0] // accum_steps, *x.shape[1:])

    return jax.tree.map(split, batch)


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    accum_steps: int = 1,
    lr_schedule: optax.Schedule | None = None,
) -> StepFn:
    """Build the pure step. A non-finite loss or gradient leaves the state unchanged and sets
    `metrics["nonfinite"] = 1`, so the loop can stop with the last good state intact."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    # The step hands its gradient norm to the optimizer (jalign's clipping reuses it); any other
    # optax transformation ignores it.
    optimizer = optax.with_extra_args_support(optimizer)

    def accumulate(params, frozen, batch, rng):
        if accum_steps == 1:
            (loss, aux), grads = grad_fn(params, frozen, batch, rng)
            return loss, grads, aux["metrics"]

        micro = _split_micro_batches(batch, accum_steps)
        zeros = jax.tree.map(jnp.zeros_like, params)

        def body(carry, xs):
            grads_sum, metrics_sum, weight_sum = carry
            mb, i = xs
            (loss, aux), grads = grad_fn(params, frozen, mb, jax.random.fold_in(rng, i))
            w = aux["weight"].astype(jnp.float32)
            grads_sum = jax.tree.map(lambda a, g: a + w * g, grads_sum, grads)
            metrics = {"loss": loss, **aux["metrics"]}
            metrics_sum = jax.tree.map(lambda a, m: a + w * m, metrics_sum, metrics)
            return (grads_sum, metrics_sum, weight_sum + w), None

        mb0 = jax.tree.map(lambda x: x[0], micro)
        metric_shapes = jax.eval_shape(lambda: grad_fn(params, frozen, mb0, rng)[0])
        metrics0 = jax.tree.map(
            lambda s: jnp.zeros(s.shape, jnp.float32),
            {"loss": metric_shapes[0], **metric_shapes[1]["metrics"]},
        )
        init = (zeros, metrics0, jnp.zeros((), jnp.float32))
        (grads_sum, metrics_sum, weight), _ = jax.lax.scan(
            body, init, (micro, jnp.arange(accum_steps))
        )
        denom = jnp.maximum(weight, 1e-12)
        grads = jax.tree.map(lambda g: g / denom, grads_sum)
        metrics = jax.tree.map(lambda m: m / denom, metrics_sum)
        return metrics.pop("loss"), grads, metrics

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng, step_rng = jax.random.split(jax.random.wrap_key_data(state.rng))
        loss, grads, metrics = accumulate(state.params, state.frozen, batch, step_rng)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def apply_update(_):
            updates, opt_state = optimizer.update(
                grads, state.opt_state, state.params, grad_norm=grad_norm
            )
            params = optax.apply_updates(state.params, updates)
            return params, opt_state, jax.random.key_data(rng)

        def keep(_):
            return state.params, state.opt_state, state.rng

        # A branch, not a select: the update runs only when it is kept, and the state is
        # neither copied nor read a second time to choose between old and new.
        params, opt_state, rng_data = jax.lax.cond(finite, apply_update, keep, None)
        new_state = TrainState(
            params=params,
            opt_state=opt_state,
            step=state.step + finite.astype(jnp.int32),
            rng=rng_data,
            frozen=state.frozen,
        )
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": grad_norm,
            "nonfinite": 1 - finite.astype(jnp.int32),
        }
        if lr_schedule is not None:
            metrics["lr"] = lr_schedule(state.step)
        return new_state, metrics

    return step


def joint_step(steps: dict[str, StepFn]) -> Callable[[dict, dict], tuple[dict, dict]]:
    """Independent steps (e.g. PPO's policy and value updates) as one step over dicts keyed like
    `steps`: `({name: state}, {name: batch}) -> ({name: new state}, {name: metrics})`. Compiled
    as one program, XLA interleaves the independent computations, filling the cores that one
    small model's step leaves idle (PPO's demo-size update: 98 -> 88 ms per policy + value
    minibatch on 2 cores)."""

    def step(states: dict, batches: dict) -> tuple[dict, dict]:
        outs = {name: fn(states[name], batches[name]) for name, fn in steps.items()}
        return {n: out[0] for n, out in outs.items()}, {n: out[1] for n, out in outs.items()}

    return step


def scan_steps(
    step: Callable[[Any, dict], tuple[Any, dict]],
) -> Callable[[Any, dict], tuple[Any, dict]]:
    """S consecutive steps as one: `(state, batches) -> (state, metrics)`, where every leaf of
    `batches` stacks the S steps' batches on a leading axis and every metric comes back stacked
    the same way; `jax.lax.scan` runs the steps in order, each on the state the previous one
    left. One dispatch and one argument transfer replace S: when the steps are small (an RL
    update's minibatch steps on a demo-size model) those per-call costs compete with the steps
    themselves for the host's cores (PPO's demo-size update, 4 policy + value steps on 2 cores:
    0.32 -> 0.25 s with glibc's default malloc, 0.24-0.30 -> 0.23-0.25 s with the huge pages the
    `jalign` command turns on)."""

    def steps(state: Any, batches: dict) -> tuple[Any, dict]:
        return jax.lax.scan(step, state, batches)

    return steps


def compile_step(
    step: Callable[[Any, dict], tuple[Any, dict]],
    state_shardings: Any = None,
    batch_sharding: Any = None,
) -> Callable[[Any, dict], tuple[Any, dict]]:
    """jit the step with explicit shardings (state in and out alike) and the old state donated."""
    if state_shardings is None:
        return jax.jit(step, donate_argnums=0)
    return jax.jit(
        step,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, None),
        donate_argnums=0,
    )

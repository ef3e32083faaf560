"""The RL forward passes with a shared prompt (`rl.share_prompt_forward`): each group's prompt
runs once into a KV cache its rows' completions attend to, which gives the log-probs,
entropies, values and gradients of running every row in full; minibatch orders keep groups
whole."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FAMILY_CONFIGS
from jalign.models import create_model, from_hf_dict
from jalign.rl.forward import last_token_scores, policy_logprobs, token_values
from jalign.rl.loop import shuffled_rows
from jalign.train.forward import sequence_rewards

TINY = from_hf_dict(FAMILY_CONFIGS["llama"])
N = 3  # samples per prompt


def grouped_batch(prompt_lengths, completion_lengths, width=7, new=6, seed=0) -> dict:
    """Rollout rows as the sampler lays them out: prompt i (left-padded to `width`) repeated
    on rows [i*N, (i+1)*N), each row with its own completion (right-padded to `new`)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, length in enumerate(prompt_lengths):
        prompt = rng.integers(4, 48, length)
        for j in range(N):
            done = completion_lengths[i * N + j]
            seg = np.r_[np.zeros(width - length), np.ones(length + done), np.zeros(new - done)]
            ids = np.r_[np.zeros(width - length), prompt, rng.integers(4, 48, new)] * seg
            rows.append((ids, seg))
    ids, seg = (np.stack(x).astype(np.int32) for x in zip(*rows, strict=True))
    return {
        "input_ids": ids,
        "positions": np.maximum(np.cumsum(seg, axis=1) - 1, 0).astype(np.int32),
        "segment_ids": seg,
        "completion_mask": seg[:, width:].astype(np.float32),
    }


def jitted(fn, graphdef, *args):
    """fn(graphdef, params, batch, *args) compiled: faster than running a model op by op."""
    return jax.jit(lambda params, batch: fn(graphdef, params, batch, *args))


BATCH = grouped_batch([7, 3, 5, 1], [6, 2, 4, 1, 6, 3, 5, 6, 6, 2, 1, 4])


@pytest.mark.parametrize("scan_layers", [False, True])
def test_shared_prompt_gives_the_full_forward_and_its_gradient(scan_layers):
    cfg = dataclasses.replace(TINY, scan_layers=scan_layers)
    graphdef, params = create_model(cfg, seed=1)
    mask = BATCH["completion_mask"]

    def objective(params, group):
        logp, entropy = policy_logprobs(graphdef, params, BATCH, 0.7, group)
        return jnp.sum((logp + 0.1 * entropy) * mask), (logp, entropy)

    value_and_grad = jax.jit(jax.value_and_grad(objective, has_aux=True), static_argnums=1)
    full = value_and_grad(params, 1)
    (_, (logp, entropy)), grads = value_and_grad(params, N)
    (_, (logp_full, entropy_full)), grads_full = full
    np.testing.assert_allclose(logp * mask, logp_full * mask, atol=2e-5)
    np.testing.assert_allclose(entropy * mask, entropy_full * mask, atol=2e-5)
    assert np.abs(logp_full * mask).min() < np.abs(logp_full * mask).max()  # not all equal
    flat, flat_full = (
        jnp.concatenate([g.ravel() for g in jax.tree.leaves(x)]) for x in (grads, grads_full)
    )
    np.testing.assert_allclose(flat, flat_full, atol=1e-5 * float(jnp.abs(flat_full).max()))


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_shared_prompt_gives_full_rows_in_every_family(family):
    """Sliding windows (mistral, gemma2), soft-capping and sandwich norms (gemma2), QK-norm
    (qwen3), learned positions (gpt2), llama-3 rope scaling."""
    graphdef, params = create_model(from_hf_dict(FAMILY_CONFIGS[family]), seed=4)
    mask = BATCH["completion_mask"]
    shared, full = (jitted(policy_logprobs, graphdef, 1.0, g)(params, BATCH)[0] for g in (N, 1))
    np.testing.assert_allclose(shared * mask, full * mask, atol=2e-5)


def test_shared_prompt_values_and_rewards_of_a_scalar_head():
    graphdef, params = create_model(TINY, head="scalar", seed=2)
    mask = BATCH["completion_mask"]
    values = jitted(token_values, graphdef, N)(params, BATCH)
    full = jitted(token_values, graphdef, 1)(params, BATCH)
    np.testing.assert_allclose(values * mask, full * mask, atol=2e-5)
    # the reward at each row's last real token: its last completion token (lengths 1 to 6)
    rewards = jitted(last_token_scores, graphdef, N)(params, BATCH)
    full = jitted(sequence_rewards, graphdef)(params, BATCH)
    np.testing.assert_allclose(rewards, full, atol=2e-5)
    assert len(set(np.round(np.asarray(rewards), 4))) == len(rewards)


@pytest.mark.parametrize(
    ("width", "new"),
    [(6, 1), (6, 2), (40, 30)],
    ids=["no-completion-chunk", "one-query-chunk", "cache-over-64-slots"],
)
def test_shared_prompt_at_other_widths(width, new):
    """One new token (the prompt chunk alone), two (a one-column completion chunk: a decode
    step's attention path) and a 69-slot cache (read as a prefix when shorter would do)."""
    graphdef, params = create_model(TINY, seed=3)
    rng = np.random.default_rng(width)
    lengths = rng.integers(1, new + 1, 2 * N)
    batch = grouped_batch([width, width // 2], lengths, width=width, new=new, seed=width)
    mask = batch["completion_mask"]
    shared, full = (jitted(policy_logprobs, graphdef, 1.0, g)(params, batch)[0] for g in (N, 1))
    np.testing.assert_allclose(shared * mask, full * mask, atol=2e-5)


def test_shuffled_rows_keep_groups_whole():
    order = shuffled_rows(np.random.default_rng(0), 12, 4)
    assert sorted(order) == list(range(12))
    groups = order.reshape(3, 4)
    np.testing.assert_array_equal(groups - groups[:, :1], np.tile(np.arange(4), (3, 1)))
    assert (groups[:, 0] % 4 == 0).all() and list(groups[:, 0]) != [0, 4, 8]
    np.testing.assert_array_equal(
        shuffled_rows(np.random.default_rng(5), 10, 1), np.random.default_rng(5).permutation(10)
    )

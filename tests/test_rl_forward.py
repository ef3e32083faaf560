"""The RL forward passes with a shared prompt (`rl.share_prompt_forward`): each group's prompt
runs once into a KV cache its rows' completions attend to, which gives the log-probs,
entropies, values and gradients of running every row in full; minibatch orders keep groups
whole."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jalign.models import create_model, from_hf_dict
from jalign.rl.forward import last_token_scores, policy_logprobs, token_values
from jalign.rl.loop import shuffled_rows
from jalign.train.forward import sequence_rewards

TINY = from_hf_dict(
    dict(
        model_type="llama",
        vocab_size=48,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
)
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


BATCH = grouped_batch([7, 3, 5, 1], [6, 2, 4, 1, 6, 3, 5, 6, 6, 2, 1, 4])


@pytest.mark.parametrize("scan_layers", [False, True])
def test_shared_prompt_gives_the_full_forward_and_its_gradient(scan_layers):
    cfg = dataclasses.replace(TINY, scan_layers=scan_layers)
    graphdef, params = create_model(cfg, seed=1)
    mask = BATCH["completion_mask"]

    def objective(params, group):
        logp, entropy = policy_logprobs(graphdef, params, BATCH, 0.7, group)
        return jnp.sum((logp + 0.1 * entropy) * mask), (logp, entropy)

    full = jax.value_and_grad(objective, has_aux=True)(params, 1)
    (_, (logp, entropy)), grads = jax.value_and_grad(objective, has_aux=True)(params, N)
    (_, (logp_full, entropy_full)), grads_full = full
    np.testing.assert_allclose(logp * mask, logp_full * mask, atol=2e-5)
    np.testing.assert_allclose(entropy * mask, entropy_full * mask, atol=2e-5)
    assert np.abs(logp_full * mask).min() < np.abs(logp_full * mask).max()  # not all equal
    flat, flat_full = (
        jnp.concatenate([g.ravel() for g in jax.tree.leaves(x)]) for x in (grads, grads_full)
    )
    np.testing.assert_allclose(flat, flat_full, atol=1e-5 * float(jnp.abs(flat_full).max()))


def test_shared_prompt_values_and_rewards_of_a_scalar_head():
    graphdef, params = create_model(TINY, head="scalar", seed=2)
    mask = BATCH["completion_mask"]
    values = token_values(graphdef, params, BATCH, N)
    full = token_values(graphdef, params, BATCH)
    np.testing.assert_allclose(values * mask, full * mask, atol=2e-5)
    # the reward at each row's last real token: its last completion token (lengths 1 to 6)
    rewards = last_token_scores(graphdef, params, BATCH, N)
    np.testing.assert_allclose(rewards, sequence_rewards(graphdef, params, BATCH), atol=2e-5)
    assert len(set(np.round(np.asarray(rewards), 4))) == len(rewards)


def test_one_new_token_needs_no_completion_chunk():
    graphdef, params = create_model(TINY, seed=3)
    batch = grouped_batch([4, 6], [1] * (2 * N), new=1)
    shared, _ = policy_logprobs(graphdef, params, batch, 1.0, N)
    np.testing.assert_allclose(shared, policy_logprobs(graphdef, params, batch, 1.0)[0], atol=2e-5)


def test_shuffled_rows_keep_groups_whole():
    order = shuffled_rows(np.random.default_rng(0), 12, 4)
    assert sorted(order) == list(range(12))
    groups = order.reshape(3, 4)
    np.testing.assert_array_equal(groups - groups[:, :1], np.tile(np.arange(4), (3, 1)))
    assert (groups[:, 0] % 4 == 0).all() and list(groups[:, 0]) != [0, 4, 8]
    np.testing.assert_array_equal(
        shuffled_rows(np.random.default_rng(5), 10, 1), np.random.default_rng(5).permutation(10)
    )

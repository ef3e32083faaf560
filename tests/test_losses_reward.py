"""Bradley-Terry reward-model losses, over pairs and over rankings, against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from losses_reference import log_sigmoid, numeric_grad

from jalign.losses import bradley_terry_loss, ranked_bradley_terry_loss

CHOSEN = np.asarray([1.5, -0.5, 0.2, 3.0])
REJECTED = np.asarray([0.5, 0.5, 0.2, -1.0])
MARGIN = np.asarray([0.0, 1.0, 0.5, 2.0])
MASK = np.asarray([1.0, 1.0, 1.0, 0.0])


def _reference(chosen, rejected, margin, coef, mask):
    per_pair = -log_sigmoid(chosen - rejected - margin) + coef * (chosen + rejected) ** 2
    return float(np.sum(mask * per_pair) / np.sum(mask))


def test_value_and_gradients_match_hand_computation():
    def loss(c, r):
        return bradley_terry_loss(c, r, jnp.asarray(MARGIN), 0.05, jnp.asarray(MASK))[0]

    c, r = jnp.asarray(CHOSEN, jnp.float32), jnp.asarray(REJECTED, jnp.float32)
    expected = _reference(CHOSEN, REJECTED, MARGIN, 0.05, MASK)
    assert loss(c, r) == pytest.approx(expected, rel=1e-6)
    grad_c, grad_r = jax.grad(loss, argnums=(0, 1))(c, r)
    np.testing.assert_allclose(
        grad_c,
        numeric_grad(lambda x: _reference(x, REJECTED, MARGIN, 0.05, MASK), CHOSEN),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        grad_r,
        numeric_grad(lambda x: _reference(CHOSEN, x, MARGIN, 0.05, MASK), REJECTED),
        atol=1e-5,
    )
    assert grad_c[3] == 0.0 and grad_r[3] == 0.0  # masked pair


def test_plain_loss_is_log2_at_equal_rewards_and_metrics():
    loss, metrics, weight = bradley_terry_loss(
        jnp.asarray(CHOSEN), jnp.asarray(REJECTED), example_mask=jnp.asarray(MASK)
    )
    assert weight == 3
    kept_c, kept_r = CHOSEN[:3], REJECTED[:3]
    assert loss == pytest.approx(_reference(kept_c, kept_r, 0.0, 0.0, np.ones(3)), rel=1e-6)
    assert metrics["accuracy"] == pytest.approx(1 / 3)  # ties do not count as correct
    assert metrics["margin"] == pytest.approx(np.mean(kept_c - kept_r), abs=1e-6)
    assert metrics["rewards/chosen_mean"] == pytest.approx(np.mean(kept_c), abs=1e-6)
    assert metrics["rewards/rejected_std"] == pytest.approx(np.std(kept_r), abs=1e-6)
    equal = bradley_terry_loss(jnp.zeros(2), jnp.zeros(2))[0]
    assert equal == pytest.approx(np.log(2.0), rel=1e-6)


def test_all_masked_is_zero_not_nan():
    def loss(c):
        return bradley_terry_loss(c, jnp.asarray(REJECTED), 0.0, 0.1, jnp.zeros(4))

    value, metrics, weight = loss(jnp.asarray(CHOSEN))
    assert value == 0.0 and weight == 0.0
    assert all(np.isfinite(v) for v in metrics.values())
    assert np.all(jax.grad(lambda c: loss(c)[0])(jnp.asarray(CHOSEN)) == 0.0)


# Three rows of k = 3 rankings: a strict order, a tie between responses 0 and 2 (one comparison
# fewer), and a masked row.
RANK_REWARDS = np.asarray([[0.5, 1.5, -1.0], [2.0, 0.0, 1.0], [0.3, 0.1, 0.2]])
RANK_SCORES = np.asarray([[1.0, 2.0, 0.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
RANK_MARGIN = np.asarray([0.5, 0.0, 1.0])
RANK_MASK = np.asarray([1.0, 1.0, 0.0])


def _ranked_reference(rewards, scores, margin, coef, mask):
    """Every comparison of every kept row, written out one by one."""
    total, count = 0.0, 0
    for b in range(len(rewards)):
        for i in range(rewards.shape[1]):
            for j in range(rewards.shape[1]):
                if mask[b] and scores[b, i] > scores[b, j]:
                    r_i, r_j = rewards[b, i], rewards[b, j]
                    total += -log_sigmoid(r_i - r_j - margin[b]) + coef * (r_i + r_j) ** 2
                    count += 1
    return float(total / count)


def test_ranked_loss_value_gradients_and_metrics_match_hand_computation():
    def loss(r):
        return ranked_bradley_terry_loss(
            r, jnp.asarray(RANK_SCORES), jnp.asarray(RANK_MARGIN), 0.05, jnp.asarray(RANK_MASK)
        )

    rewards = jnp.asarray(RANK_REWARDS, jnp.float32)
    value, metrics, weight = loss(rewards)

    def reference(r):
        return _ranked_reference(r, RANK_SCORES, RANK_MARGIN, 0.05, RANK_MASK)

    assert weight == 5  # 3 comparisons in row 0, 2 in row 1 (its tie makes none)
    assert value == pytest.approx(reference(RANK_REWARDS), rel=1e-6)
    np.testing.assert_allclose(
        jax.grad(lambda r: loss(r)[0])(rewards), numeric_grad(reference, RANK_REWARDS), atol=1e-5
    )
    # Row 0: 1.5 > 0.5 > -1.0 is its order (right, 3 of 3); row 1: 2.0 > 0.0 right, 1.0 > 0.0
    # right; so 5 of 5, with gaps 1.0, 2.5, 1.5, 2.0, 1.0.
    assert metrics["accuracy"] == pytest.approx(1.0)
    assert metrics["margin"] == pytest.approx(8.0 / 5, rel=1e-6)
    # chosen: each row's first top-scored response (1.5, 2.0); rejected: its lowest (-1.0, 0.0)
    assert metrics["rewards/chosen_mean"] == pytest.approx(1.75, rel=1e-6)
    assert metrics["rewards/rejected_mean"] == pytest.approx(-0.5, rel=1e-6)


def test_pairwise_loss_is_the_ranked_loss_of_two_responses():
    ranked = ranked_bradley_terry_loss(
        jnp.stack([jnp.asarray(REJECTED), jnp.asarray(CHOSEN)], axis=1),
        jnp.asarray([[0.0, 1.0]] * 4),  # chosen second: the order of the responses is free
        jnp.asarray(MARGIN),
        0.05,
        jnp.asarray(MASK),
    )
    pairwise = bradley_terry_loss(
        jnp.asarray(CHOSEN), jnp.asarray(REJECTED), jnp.asarray(MARGIN), 0.05, jnp.asarray(MASK)
    )
    assert ranked[0] == pytest.approx(float(pairwise[0]), rel=1e-6)
    assert ranked[2] == pairwise[2] == 3
    for key in pairwise[1]:
        assert ranked[1][key] == pytest.approx(float(pairwise[1][key]), rel=1e-6, abs=1e-7)


def test_padding_responses_of_a_short_ranking_count_for_nothing():
    """Row 1 of RANK_* padded to k = 4 with a response whose score (5.0) and reward (9.0) would
    make it the best: masked out, the loss, its gradient on the real responses and the metrics
    are those of the unpadded rankings, and the padding gets no gradient."""
    real = jnp.asarray([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    scores = jnp.asarray(np.concatenate([RANK_SCORES, [[5.0], [-1.0], [5.0]]], axis=1))
    rewards = jnp.asarray(np.concatenate([RANK_REWARDS, [[9.0], [-2.0], [9.0]]], axis=1))
    rewards = rewards.at[1, 3].set(-2.0)  # row 1's fourth response is real: scored lowest

    def padded(r):
        return ranked_bradley_terry_loss(
            r, scores, jnp.asarray(RANK_MARGIN), 0.05, jnp.asarray(RANK_MASK), real
        )

    value, metrics, weight = padded(rewards)
    fourth = np.asarray(rewards)[:, 3:]
    # The reference skips padding by its NaN score (no comparison with NaN holds).
    expected_scores = np.concatenate([RANK_SCORES, [[np.nan], [-1.0], [np.nan]]], axis=1)

    def reference(r):
        return _ranked_reference(r, expected_scores, RANK_MARGIN, 0.05, RANK_MASK)

    full = np.concatenate([RANK_REWARDS, fourth], axis=1)
    assert weight == 3 + (2 + 3)  # row 1 gains 3 comparisons with its lowest; row 2 is masked
    assert value == pytest.approx(reference(full), rel=1e-6)
    grad = jax.grad(lambda r: padded(r)[0])(rewards)
    assert float(grad[0, 3]) == float(grad[2, 3]) == 0.0
    np.testing.assert_allclose(grad, numeric_grad(reference, full), atol=1e-5)
    assert metrics["rewards/chosen_mean"] == pytest.approx(1.75, rel=1e-6)  # not row 0's 9.0
    assert metrics["rewards/rejected_mean"] == pytest.approx((-1.0 - 2.0) / 2, rel=1e-6)

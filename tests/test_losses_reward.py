"""Bradley-Terry reward-model loss against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from losses_reference import log_sigmoid, numeric_grad

from jalign.losses import bradley_terry_loss

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

"""Log-probabilities, aggregation modes and the SFT loss against hand computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from losses_reference import numeric_grad

from jalign.errors import JalignError
from jalign.losses import (
    aggregate,
    chunked_token_logprobs,
    masked_mean,
    masked_sum,
    sft_loss,
    shifted_entropy,
    shifted_logprobs,
    token_entropy,
    token_logprobs,
)

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(2, 5, 7)).astype(np.float32)
IDS = RNG.integers(0, 7, size=(2, 5)).astype(np.int32)


def _np_log_softmax(x):
    x = np.asarray(x, np.float64)
    return (
        x
        - np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1, keepdims=True))
        - x.max(-1, keepdims=True)
    )


def test_token_logprobs_matches_log_softmax_with_temperature():
    got = token_logprobs(jnp.asarray(LOGITS), jnp.asarray(IDS), temperature=0.7)
    expected = np.take_along_axis(_np_log_softmax(LOGITS / 0.7), IDS[..., None], -1)[..., 0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.dtype == jnp.float32


def test_token_logprobs_upcasts_bfloat16_logits():
    got = token_logprobs(jnp.asarray(LOGITS, jnp.bfloat16), jnp.asarray(IDS))
    assert got.dtype == jnp.float32


def test_shifted_logprobs_alignment():
    got = np.asarray(shifted_logprobs(jnp.asarray(LOGITS), jnp.asarray(IDS)))
    ref = _np_log_softmax(LOGITS)
    for b in range(2):
        assert got[b, 0] == 0.0
        for t in range(1, 5):  # entry t: logits at t-1 predicting token t
            assert got[b, t] == pytest.approx(ref[b, t - 1, IDS[b, t]], abs=1e-5)


def test_token_logprobs_gradient_is_softmax_minus_one_hot():
    grad = jax.grad(lambda x: jnp.sum(token_logprobs(x, jnp.asarray(IDS), 0.7)))(LOGITS)
    probs = np.exp(_np_log_softmax(LOGITS / 0.7))
    expected = (np.eye(7)[IDS] - probs) / 0.7
    np.testing.assert_allclose(grad, expected, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [2, 3])  # T - 1 = 4 positions: exact split / padded
def test_chunked_equals_plain_values_and_gradients(chunk_size):
    hidden = jnp.asarray(RNG.normal(size=(2, 4, 3)), jnp.float32)
    w = jnp.asarray(RNG.normal(size=(3, 7)), jnp.float32)
    targets = jnp.asarray(IDS[:, 1:])
    mask = jnp.asarray([[1, 1, 1, 0], [0, 1, 1, 1]], jnp.float32)

    def plain(h, w):
        return jnp.sum(token_logprobs(h @ w, targets, 1.3) * mask)

    def chunked(h, w):
        return jnp.sum(chunked_token_logprobs(h, lambda x: x @ w, targets, chunk_size, 1.3) * mask)

    logps, entropy = chunked_token_logprobs(
        hidden, lambda x: x @ w, targets, chunk_size, 1.3, with_entropy=True
    )
    np.testing.assert_allclose(logps, token_logprobs(hidden @ w, targets, 1.3), atol=1e-5)
    np.testing.assert_allclose(entropy, token_entropy(hidden @ w, 1.3), atol=1e-5)
    g_plain = jax.grad(plain, argnums=(0, 1))(hidden, w)
    g_chunk = jax.jit(jax.grad(chunked, argnums=(0, 1)))(hidden, w)
    for a, b in zip(g_plain, g_chunk, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_shifted_entropy_alignment():
    got = np.asarray(shifted_entropy(jnp.asarray(LOGITS)))
    p = np.exp(_np_log_softmax(LOGITS))
    expected = -np.sum(p * np.log(p), -1)
    np.testing.assert_allclose(got[:, 0], 0.0)
    np.testing.assert_allclose(got[:, 1:], expected[:, :-1], atol=1e-5)


def test_chunked_rejects_bad_chunk_size():
    with pytest.raises(JalignError, match="chunk_size"):
        chunked_token_logprobs(jnp.zeros((1, 3, 2)), lambda h: h, jnp.zeros((1, 3), int), 0)


def test_token_entropy_uniform_and_masked_vocab():
    assert token_entropy(jnp.zeros((4,))) == pytest.approx(math.log(4), abs=1e-6)
    # p = (1/2, 1/2, 0): -inf logits contribute 0, value and gradient stay finite
    logits = jnp.asarray([0.0, 0.0, -jnp.inf])
    assert token_entropy(logits) == pytest.approx(math.log(2), abs=1e-6)
    assert np.isfinite(np.asarray(jax.grad(token_entropy)(logits)[:2])).all()
    x = RNG.normal(size=(5,))

    def ref(z):
        p = np.exp(_np_log_softmax(z / 2.0))
        return float(-np.sum(p * np.log(p)))

    assert token_entropy(jnp.asarray(x, jnp.float32), 2.0) == pytest.approx(ref(x), abs=1e-5)
    np.testing.assert_allclose(
        jax.grad(token_entropy)(jnp.asarray(x, jnp.float32), 2.0), numeric_grad(ref, x), atol=1e-5
    )


def test_masked_sum_and_mean_never_nan():
    v = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = jnp.asarray([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert masked_sum(v, m) == 4.0
    np.testing.assert_allclose(masked_sum(v, m, axis=1), [4.0, 0.0])
    np.testing.assert_allclose(masked_mean(v, m, axis=1), [2.0, 0.0])
    assert masked_mean(v, jnp.zeros_like(m)) == 0.0


# --- aggregation -----------------------------------------------------------------------------

X = np.asarray([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 5.0, 5.0]])
M = np.asarray([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)


@pytest.mark.parametrize(
    ("mode", "expected", "weight"),
    [
        ("token-mean", (1 + 2 + 3 + 10) / 4, 4),
        ("seq-mean-token-mean", (2.0 + 10.0) / 2, 2),
        ("seq-mean-token-sum", (6.0 + 10.0) / 2, 2),
        ("seq-mean-token-sum-norm", (6.0 + 10.0) / 4 / 2, 2),
    ],
)
def test_aggregate_modes(mode, expected, weight):
    value, w = aggregate(jnp.asarray(X), jnp.asarray(M), mode)
    assert value == pytest.approx(expected, rel=1e-6)
    assert w == weight
    grad = jax.grad(lambda x: aggregate(x, jnp.asarray(M), mode)[0])(jnp.asarray(X))
    assert np.all(np.asarray(grad)[M == 0] == 0)  # masked tokens get no gradient
    # the gradient of a linear reduction is its per-token weight
    per_token = {"token-mean": 1 / 4, "seq-mean-token-sum": 1 / 2, "seq-mean-token-sum-norm": 1 / 8}
    if mode == "seq-mean-token-mean":
        assert grad[0, 0] == pytest.approx(1 / 6) and grad[1, 0] == pytest.approx(1 / 2)
    else:
        np.testing.assert_allclose(np.asarray(grad)[M == 1], per_token[mode], rtol=1e-6)


def test_aggregate_constant_max_length_and_all_masked():
    value, _ = aggregate(jnp.asarray(X), jnp.asarray(M), "seq-mean-token-sum-norm", max_length=8)
    assert value == pytest.approx((6.0 + 10.0) / 8 / 2)
    for mode in ("token-mean", "seq-mean-token-mean"):
        value, weight = aggregate(jnp.asarray(X), jnp.zeros_like(M), mode)
        assert value == 0.0 and weight == 0.0


def test_aggregate_rejects_unknown_mode():
    with pytest.raises(JalignError, match="allowed: token-mean, seq-mean-token-mean"):
        aggregate(jnp.asarray(X), jnp.asarray(M), "mean")


# --- SFT -------------------------------------------------------------------------------------


def test_sft_loss_token_and_sequence_normalization():
    logps = jnp.asarray([[0.0, -1.0, -2.0, -3.0], [0.0, -4.0, -5.0, -6.0]])
    mask = jnp.asarray([[0, 1, 1, 1], [0, 1, 0, 0]], jnp.float32)
    loss, metrics, weight = sft_loss(logps, mask, "token")
    assert loss == pytest.approx(10.0 / 4) and weight == 4
    assert metrics["nll"] == pytest.approx(10.0 / 4)
    loss, _, weight = sft_loss(logps, mask, "sequence")
    assert loss == pytest.approx((2.0 + 4.0) / 2) and weight == 2
    grad = jax.grad(lambda lp: sft_loss(lp, mask, "sequence")[0])(logps)
    np.testing.assert_allclose(grad, [[0, -1 / 6, -1 / 6, -1 / 6], [0, -1 / 2, 0, 0]], rtol=1e-6)


def test_sft_loss_example_mask_drops_rows_and_all_masked_is_zero():
    logps = jnp.asarray([[0.0, -1.0, -2.0], [0.0, -4.0, -5.0]])
    mask = jnp.ones((2, 3), jnp.float32)
    loss, _, weight = sft_loss(logps, mask, "token", example_mask=jnp.asarray([1.0, 0.0]))
    assert loss == pytest.approx(1.0) and weight == 3
    for normalization in ("token", "sequence"):
        loss, metrics, weight = sft_loss(logps, jnp.zeros_like(mask), normalization)
        assert loss == 0.0 and weight == 0 and not np.isnan(metrics["nll"])


def test_sft_loss_rejects_unknown_normalization():
    with pytest.raises(JalignError, match="allowed: token, sequence"):
        sft_loss(jnp.zeros((1, 2)), jnp.ones((1, 2)), "mean")


def test_token_logprobs_hits_are_top_ranked_targets_ties_included():
    logits = jnp.asarray([[[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 0.0]]])
    targets = jnp.asarray([[1, 1, 2]])  # top, tied for top, not top
    logps, hits = token_logprobs(logits, targets, with_hits=True)
    np.testing.assert_array_equal(logps, token_logprobs(logits, targets))
    assert hits.tolist() == [[True, True, False]]

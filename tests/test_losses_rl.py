"""RL pieces: GAE, whitening, KL estimators and controller, PPO losses, group advantages."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from losses_reference import numeric_grad

from jalign.errors import JalignError
from jalign.losses import (
    KLControllerConfig,
    explained_variance,
    gae,
    group_advantages,
    kl_estimate,
    kl_penalized_rewards,
    masked_whiten,
    normalize_scores,
    penalize_missing_eos,
    ppo_policy_loss,
    ppo_value_loss,
    update_kl_coef,
)

# --- GAE -------------------------------------------------------------------------------------


def test_gae_worked_by_hand():
    gamma, lam = 0.9, 0.8  # gamma * lam = 0.72
    rewards = jnp.asarray([[0.0, 0.0, 1.0, 5.0], [0.2, -1.0, 3.0, 3.0]])
    values = jnp.asarray([[0.5, 0.4, 0.6, 9.0], [1.0, -0.5, 7.0, 7.0]])
    mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 0, 0]], jnp.float32)
    advantages, returns = jax.jit(gae, static_argnums=(3, 4))(rewards, values, mask, gamma, lam)
    # row 0: delta_2 = 1 - 0.6 = 0.4 (V after the last token is 0);   A_2 = 0.4
    #        delta_1 = 0.9 * 0.6 - 0.4 = 0.14;                        A_1 = 0.14 + 0.72 * 0.4
    #        delta_0 = 0.9 * 0.4 - 0.5 = -0.14;                       A_0 = -0.14 + 0.72 * A_1
    a1 = 0.14 + 0.72 * 0.4
    row0 = [-0.14 + 0.72 * a1, a1, 0.4, 0.0]
    # row 1: delta_1 = -1 + 0.5 = -0.5;  delta_0 = 0.2 + 0.9 * -0.5 - 1 = -1.25
    row1 = [-1.25 + 0.72 * -0.5, -0.5, 0.0, 0.0]
    np.testing.assert_allclose(advantages, [row0, row1], atol=1e-6)
    np.testing.assert_allclose(
        returns, [[row0[0] + 0.5, a1 + 0.4, 1.0, 0.0], [row1[0] + 1.0, -1.0, 0.0, 0.0]], atol=1e-6
    )


def test_gae_matches_loop_with_prompt_prefix_in_mask():
    rng = np.random.default_rng(1)
    r, v = rng.normal(size=(2, 6)), rng.normal(size=(2, 6))
    mask = np.asarray([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], np.float64)
    expected = np.zeros_like(r)
    for b in range(2):
        next_v = next_a = 0.0
        for t in reversed(range(6)):
            if mask[b, t]:
                delta = r[b, t] + 0.95 * next_v - v[b, t]
                expected[b, t] = next_a = delta + 0.95 * 0.9 * next_a
                next_v = v[b, t]
    advantages, _ = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(mask), 0.95, 0.9)
    np.testing.assert_allclose(advantages, expected, atol=1e-5)


def test_masked_whiten_and_score_normalization():
    x = jnp.asarray([1.0, 2.0, 3.0, 100.0])
    m = jnp.asarray([1.0, 1.0, 1.0, 0.0])  # mean 2, unbiased variance 1
    np.testing.assert_allclose(masked_whiten(x, m), [-1.0, 0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(masked_whiten(x, m, shift_mean=False), [1, 2, 3, 0], atol=1e-6)
    assert np.all(np.asarray(masked_whiten(x, jnp.zeros(4))) == 0.0)
    clipped = normalize_scores(jnp.asarray([-5.0, 0.5, 9.0]), clip=2.0)
    np.testing.assert_allclose(clipped, [-2.0, 0.5, 2.0])
    whitened = normalize_scores(jnp.asarray([-5.0, 0.0, 9.0]), clip=1.0, whiten=True)
    np.testing.assert_allclose(whitened, [-1.0, 0.0, 1.0], atol=1e-6)


def test_penalize_missing_eos_only_counts_real_tokens():
    ids = jnp.asarray([[5, 2, 0], [5, 6, 2], [5, 6, 7]])
    mask = jnp.asarray([[1, 1, 0], [1, 1, 0], [1, 1, 1]])  # row 1's EOS is in the padding
    got = penalize_missing_eos(jnp.asarray([1.0, 1.0, 1.0]), ids, mask, 2, 0.5)
    np.testing.assert_allclose(got, [1.0, 0.5, 0.5])


# --- KL --------------------------------------------------------------------------------------

LOGP = np.asarray([-1.0, -2.5, -0.3])
REF = np.asarray([-1.4, -2.0, -0.3])


@pytest.mark.parametrize(
    ("kind", "value", "grad"),
    [
        ("k1", lambda lr: -lr, lambda lr: np.ones_like(lr)),
        ("k2", lambda lr: 0.5 * lr**2, lambda lr: -lr),
        ("k3", lambda lr: np.exp(lr) - 1 - lr, lambda lr: 1 - np.exp(lr)),
    ],
)
def test_kl_estimators_values_and_gradients(kind, value, grad):
    log_ratio = REF - LOGP
    got = kl_estimate(jnp.asarray(LOGP), jnp.asarray(REF), kind)
    np.testing.assert_allclose(got, value(log_ratio), atol=1e-6)
    g = jax.grad(lambda lp: jnp.sum(kl_estimate(lp, jnp.asarray(REF), kind)))(jnp.asarray(LOGP))
    np.testing.assert_allclose(g, grad(log_ratio), atol=1e-6)


def test_k1_and_k3_are_unbiased_k2_is_not():
    p = np.asarray([0.5, 0.3, 0.2])
    q = np.asarray([0.4, 0.4, 0.2])
    kl = float(np.sum(p * np.log(p / q)))
    for kind, unbiased in (("k1", True), ("k3", True), ("k2", False)):
        per_sample = kl_estimate(jnp.log(jnp.asarray(p)), jnp.log(jnp.asarray(q)), kind)
        expectation = float(np.sum(p * np.asarray(per_sample)))  # exact E_{y ~ p}
        assert (expectation == pytest.approx(kl, abs=1e-6)) == unbiased, kind
    assert np.isfinite(kl_estimate(jnp.asarray([-500.0]), jnp.asarray([0.0]), "k3")).all()
    with pytest.raises(JalignError, match="allowed: k1, k2, k3"):
        kl_estimate(jnp.zeros(1), jnp.zeros(1), "k4")


def test_kl_penalized_rewards_put_score_on_last_real_token():
    logp = jnp.asarray([[-1.0, -2.0, -0.5, -9.0], [-9.0, -1.0, -1.5, -9.0], [-1.0] * 4])
    ref = jnp.asarray([[-1.5, -1.0, -0.5, 0.0], [0.0, -2.0, -1.0, 0.0], [-1.0] * 4])
    mask = jnp.asarray([[1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], jnp.float32)
    rewards, kl = kl_penalized_rewards(jnp.asarray([2.0, -1.0, 7.0]), logp, ref, mask, 0.1)
    np.testing.assert_allclose(kl, [[0.5, -1.0, 0.0, 0.0], [0.0, 1.0, -0.5, 0.0], [0.0] * 4])
    np.testing.assert_allclose(
        rewards,
        [[-0.05, 0.1, 2.0, 0.0], [0.0, -0.1, 0.05 - 1.0, 0.0], [0.0] * 4],
        atol=1e-6,
    )


def test_kl_controller():
    adaptive = KLControllerConfig("adaptive", init_coef=0.1, target=6.0, horizon=10000)
    # KL 9: error clipped to +0.2; KL 5.4: error -0.1
    assert update_kl_coef(0.1, 9.0, 256, adaptive) == pytest.approx(0.1 * (1 + 0.2 * 0.0256))
    assert update_kl_coef(0.1, 5.4, 256, adaptive) == pytest.approx(0.1 * (1 - 0.1 * 0.0256))
    jitted = jax.jit(update_kl_coef, static_argnums=3)
    assert jitted(0.1, 1.0, 256, KLControllerConfig("fixed", init_coef=0.1)) == pytest.approx(0.1)
    with pytest.raises(JalignError, match="allowed: fixed, adaptive"):
        KLControllerConfig("pid")
    with pytest.raises(JalignError, match="horizon=0"):
        KLControllerConfig("adaptive", horizon=0)


# --- PPO -------------------------------------------------------------------------------------

# (ratio, advantage) per token, chosen away from the clip kinks; the last token is masked.
RATIOS = np.asarray([[1.1, 1.5, 0.5, 0.5], [4.0, 2.0, 1.0, 7.0]])
ADVANTAGES = np.asarray([[1.0, 1.0, 1.0, -1.0], [-1.0, -1.0, 0.5, 3.0]])
MASK = np.asarray([[1, 1, 1, 1], [1, 1, 1, 0]], np.float64)
OLD = np.full((2, 4), -1.0)


def _ppo_reference(logp, eps_low=0.2, eps_high=0.28, c=3.0):
    ratio = np.exp(logp - OLD)
    loss = np.maximum(-ADVANTAGES * ratio, -ADVANTAGES * np.clip(ratio, 1 - eps_low, 1 + eps_high))
    loss = np.where(ADVANTAGES < 0, np.minimum(loss, -c * ADVANTAGES), loss)
    return loss * MASK


def test_ppo_policy_loss_clip_higher_and_dual_clip():
    logp = OLD + np.log(RATIOS)

    def per_token(lp):
        return ppo_policy_loss(lp, OLD, ADVANTAGES, MASK, 0.2, 0.28, dual_clip=3.0)

    loss, metrics = per_token(jnp.asarray(logp, jnp.float32))
    # by hand: -1.1; clipped high -1.28; -0.5 (pessimistic, not clipped); clipped low 0.8;
    # dual clip 3.0 (instead of 4.0); 2.0; -0.5; masked
    np.testing.assert_allclose(loss, [[-1.1, -1.28, -0.5, 0.8], [3.0, 2.0, -0.5, 0.0]], atol=1e-6)
    np.testing.assert_allclose(loss, _ppo_reference(logp), atol=1e-6)
    assert metrics["clipfrac"] == pytest.approx(2 / 7)
    assert metrics["dual_clipfrac"] == pytest.approx(1 / 7)
    assert metrics["approxkl"] == pytest.approx(0.5 * np.sum(np.log(RATIOS) ** 2 * MASK) / 7)
    grad = jax.grad(lambda lp: jnp.sum(per_token(lp)[0]))(jnp.asarray(logp, jnp.float32))
    expected = numeric_grad(lambda lp: float(np.sum(_ppo_reference(lp))), logp)
    np.testing.assert_allclose(grad, expected, atol=1e-5)
    # only unclipped tokens carry gradient -A * ratio
    np.testing.assert_allclose(grad, [[-1.1, 0, -0.5, 0], [0, 2.0, -0.5, 0]], atol=1e-6)


def test_ppo_policy_loss_symmetric_clip_default():
    logp = OLD + np.log(RATIOS)
    loss, metrics = ppo_policy_loss(jnp.asarray(logp), OLD, ADVANTAGES, MASK)
    assert loss[0, 1] == pytest.approx(-1.2)  # eps_high defaults to eps_low
    assert loss[1, 0] == pytest.approx(4.0) and "dual_clipfrac" not in metrics


def test_ppo_value_loss_by_hand():
    values = np.asarray([[1.5, 0.1, 2.0]])
    old = np.asarray([[1.0, 0.0, 0.0]])
    returns = np.asarray([[2.0, 1.0, 9.0]])
    mask = np.asarray([[1.0, 1.0, 0.0]])

    def reference(v):
        clipped = old + np.clip(v - old, -0.2, 0.2)
        return float(np.sum(0.5 * np.maximum((v - returns) ** 2, (clipped - returns) ** 2) * mask))

    loss, metrics = ppo_value_loss(jnp.asarray(values), old, returns, mask, 0.2)
    # token 0: V_clip = 1.2, max(0.25, 0.64) / 2; token 1: |V - V_old| < 0.2, 0.81 / 2
    np.testing.assert_allclose(loss, [[0.32, 0.405, 0.0]], atol=1e-6)
    assert metrics["value_clipfrac"] == pytest.approx(0.5)
    grad = jax.grad(lambda v: jnp.sum(ppo_value_loss(v, old, returns, mask, 0.2)[0]))(
        jnp.asarray(values, jnp.float32)
    )
    np.testing.assert_allclose(grad, numeric_grad(reference, values), atol=1e-5)
    np.testing.assert_allclose(grad, [[0.0, -0.9, 0.0]], atol=1e-6)


def test_explained_variance():
    targets = jnp.asarray([1.0, 2.0, 3.0, 50.0])
    mask = jnp.asarray([1.0, 1.0, 1.0, 0.0])
    assert explained_variance(targets, targets, mask) == pytest.approx(1.0)
    assert explained_variance(jnp.full(4, 2.0), targets, mask) == pytest.approx(0.0)
    preds = jnp.asarray([1.5, 2.0, 2.5, 0.0])  # residual var 1/6, target var 2/3
    assert explained_variance(preds, targets, mask) == pytest.approx(0.75, rel=1e-6)
    assert explained_variance(preds, jnp.ones(4), mask) == 0.0


# --- group advantages ------------------------------------------------------------------------

GROUP_REWARDS = jnp.asarray([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])


def test_grpo_and_dr_grpo():
    got = jax.jit(group_advantages, static_argnums=(1, 2))(GROUP_REWARDS, 4, "grpo")
    std = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0, 1)
    a = 0.5 / (std + 1e-4)
    np.testing.assert_allclose(got, [a, -a, -a, a, 0, 0, 0, 0], rtol=1e-6)
    got = group_advantages(GROUP_REWARDS, 4, "dr_grpo")
    np.testing.assert_allclose(got, [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])


def test_rloo_leave_one_out_with_padding_sample():
    got = group_advantages(GROUP_REWARDS, 4, "rloo")
    np.testing.assert_allclose(got, [2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0], atol=1e-6)
    mask = jnp.asarray([1, 1, 1, 0, 1, 0, 0, 0], jnp.float32)  # group 1 has one valid sample
    got = group_advantages(GROUP_REWARDS, 4, "rloo", mask)
    np.testing.assert_allclose(got, [1.0, -0.5, -0.5, 0, 0, 0, 0, 0], atol=1e-6)


def test_reinforce_pp_global_whitening():
    r = np.asarray(GROUP_REWARDS)
    got = group_advantages(GROUP_REWARDS, 4, "reinforce_pp")
    np.testing.assert_allclose(got, (r - r.mean()) / r.std(ddof=1), atol=1e-5)
    centered = r - np.repeat(r.reshape(2, 4).mean(1), 4)
    got = group_advantages(GROUP_REWARDS, 4, "reinforce_pp_baseline")
    np.testing.assert_allclose(got, centered / centered.std(ddof=1), atol=1e-5)


def test_group_advantages_errors():
    with pytest.raises(JalignError, match="allowed: grpo, dr_grpo, rloo"):
        group_advantages(GROUP_REWARDS, 4, "ppo")
    with pytest.raises(JalignError, match="group_size=3"):
        group_advantages(GROUP_REWARDS, 3)


def test_all_masked_rows_give_zeros_not_nan():
    x = jnp.asarray([[0.3, -1.0, 2.0]])
    none = jnp.zeros((1, 3))
    advantages, returns = gae(x, x, none, 0.9, 0.8)
    policy, policy_metrics = ppo_policy_loss(x, -x, x, none, 0.2, 0.28, 3.0)
    value, value_metrics = ppo_value_loss(x, -x, x, none)
    outputs = [
        advantages,
        returns,
        policy,
        value,
        *policy_metrics.values(),
        *value_metrics.values(),
    ]
    outputs += [explained_variance(x, -x, none), kl_penalized_rewards(x[:, 0], x, -x, none, 0.1)[0]]
    outputs.append(group_advantages(x[0], 3, "grpo", jnp.zeros(3)))
    for out in outputs:
        assert np.all(np.asarray(out) == 0.0)
    grad = jax.grad(lambda lp: jnp.sum(ppo_policy_loss(lp, -x, x, none)[0]))(x)
    assert np.all(np.asarray(grad) == 0.0)

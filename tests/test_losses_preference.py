"""DPO family, KTO and RRHF: values and gradients against float64 numpy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from losses_reference import log_sigmoid, numeric_grad, sigmoid

from jalign.errors import JalignError
from jalign.losses import (
    PREFERENCE_LOSS_TYPES,
    KTOLossConfig,
    PreferenceLossConfig,
    kto_loss,
    preference_loss,
    rrhf_loss,
)

# Three pairs: rows of (policy chosen, policy rejected, ref chosen, ref rejected) summed logps.
LOGPS = np.asarray(
    [
        [-5.0, -8.0, -3.0],
        [-6.0, -7.5, -9.0],
        [-5.5, -7.0, -4.0],
        [-5.8, -8.0, -8.0],
    ]
)
LEN_C = np.asarray([4.0, 8.0, 2.0])
LEN_R = np.asarray([5.0, 3.0, 6.0])
MASK = np.asarray([1.0, 1.0, 0.0])

CONFIGS = {
    "sigmoid": PreferenceLossConfig("sigmoid", beta=0.5),
    "sigmoid_smoothed": PreferenceLossConfig("sigmoid", beta=0.5, label_smoothing=0.2),
    "robust": PreferenceLossConfig("robust", beta=0.5, label_smoothing=0.2),
    "ipo": PreferenceLossConfig("ipo", beta=0.3),
    "hinge": PreferenceLossConfig("hinge", beta=0.5),
    "simpo": PreferenceLossConfig("simpo", beta=2.0, gamma=0.3, label_smoothing=0.1),
    "orpo": PreferenceLossConfig("orpo", orpo_lambda=0.4),
    "cpo": PreferenceLossConfig("cpo", beta=0.5, cpo_alpha=0.7),
    "kldpo": PreferenceLossConfig("kldpo", beta=0.5, dro_tau=0.8),
    "wdpo": PreferenceLossConfig("wdpo", beta=0.5, dro_radius=0.6, label_smoothing=0.1),
    "sigmoid_rpo": PreferenceLossConfig("sigmoid", beta=0.5, rpo_alpha=0.3),
}


def _per_pair_reference(cfg, x):
    """Float64 per-pair losses written straight from the papers' formulas (x: LOGPS-shaped)."""
    pc, pr, rc, rr = x
    beta, eps = cfg.beta, cfg.label_smoothing
    nll = -pc / LEN_C
    dpo_h = (pc - rc) - (pr - rr)

    def smoothed(z):
        return -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z)

    kind = cfg.loss_type
    if kind in ("sigmoid", "kldpo"):
        loss = smoothed(beta * dpo_h)
    elif kind == "robust":
        z = beta * dpo_h
        loss = ((1 - eps) * -log_sigmoid(z) - eps * -log_sigmoid(-z)) / (1 - 2 * eps)
    elif kind == "ipo":
        h = (pc / LEN_C - rc / LEN_C) - (pr / LEN_R - rr / LEN_R)
        loss = (h - 1 / (2 * beta)) ** 2
    elif kind == "hinge":
        loss = np.maximum(0.0, 1 - beta * dpo_h)
    elif kind == "simpo":
        loss = smoothed(beta * (pc / LEN_C - pr / LEN_R) - cfg.gamma)
    elif kind == "orpo":
        p_c, p_r = np.exp(pc / LEN_C), np.exp(pr / LEN_R)
        log_odds = np.log(p_c / (1 - p_c)) - np.log(p_r / (1 - p_r))
        loss = nll - cfg.orpo_lambda * log_sigmoid(log_odds)
    elif kind == "cpo":
        loss = cfg.cpo_alpha * nll + smoothed(beta * (pc - pr))
    else:  # wdpo
        z = beta * dpo_h
        loss = smoothed(z) + cfg.dro_radius * np.abs(eps - sigmoid(-z))
    return loss + cfg.rpo_alpha * nll


def _reference(cfg, x, mask):
    per_pair = _per_pair_reference(cfg, x)
    if cfg.loss_type == "kldpo":
        q = mask * np.exp(per_pair / cfg.dro_tau)
        return float(np.sum(q / q.sum() * per_pair))
    return float(np.sum(mask * per_pair) / np.sum(mask))


def _reference_gradient(cfg, x, mask):
    if cfg.loss_type == "kldpo":
        # Danskin: grad of max_P E_P[l] - tau KL(P||P0) = tau log E_P0 exp(l / tau) is
        # sum_i q_i grad l_i, which is what stop-gradient weights give.
        def soft_max(y):
            per_pair = _per_pair_reference(cfg, y)
            return cfg.dro_tau * np.log(np.sum(mask * np.exp(per_pair / cfg.dro_tau)))

        return numeric_grad(soft_max, x)
    return numeric_grad(lambda y: _reference(cfg, y, mask), x)


def _jax_loss(cfg, x, mask=MASK, **kwargs):
    pc, pr, rc, rr = x
    if not cfg.needs_reference:
        rc = rr = None
    return preference_loss(pc, pr, rc, rr, LEN_C, LEN_R, cfg, jnp.asarray(mask), **kwargs)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_value_and_gradient_match_reference(name):
    cfg = CONFIGS[name]
    x = jnp.asarray(LOGPS, jnp.float32)
    loss, _, weight = _jax_loss(cfg, x)
    assert loss == pytest.approx(_reference(cfg, LOGPS, MASK), rel=1e-5, abs=1e-6)
    assert weight == 2
    grad = jax.grad(lambda y: _jax_loss(cfg, y)[0])(x)
    np.testing.assert_allclose(grad, _reference_gradient(cfg, LOGPS, MASK), atol=2e-5)
    assert np.all(np.asarray(grad)[:, 2] == 0.0)  # the masked pair gets no gradient
    if not cfg.needs_reference:
        assert np.all(np.asarray(grad)[2:] == 0.0)


def test_every_loss_type_is_tested():
    assert {cfg.loss_type for cfg in CONFIGS.values()} == set(PREFERENCE_LOSS_TYPES)


def test_kldpo_upweights_the_worst_pair():
    cfg = CONFIGS["kldpo"]
    _, metrics, _ = _jax_loss(cfg, jnp.asarray(LOGPS), mask=np.ones(3))
    per_pair = _per_pair_reference(cfg, LOGPS)
    q = np.exp(per_pair / cfg.dro_tau) / np.sum(np.exp(per_pair / cfg.dro_tau))
    assert metrics["dro/max_weight"] == pytest.approx(q.max(), rel=1e-5)
    assert q.max() > 1 / 3 and np.argmax(q) == np.argmax(per_pair)


def test_sigmoid_metrics_use_trl_names_and_values():
    cfg = CONFIGS["sigmoid"]
    _, metrics, _ = _jax_loss(cfg, jnp.asarray(LOGPS), mask=np.ones(3))
    pc, pr, rc, rr = LOGPS
    chosen, rejected = cfg.beta * (pc - rc), cfg.beta * (pr - rr)
    expected = {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": np.mean(chosen > rejected),
        "logps/chosen": pc.mean(),
        "logps/rejected": pr.mean(),
    }
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-5), key


def test_dpo_at_policy_equal_reference_is_log2():
    x = jnp.asarray(np.stack([LOGPS[0], LOGPS[1], LOGPS[0], LOGPS[1]]), jnp.float32)
    loss, metrics, _ = _jax_loss(CONFIGS["sigmoid"], x, mask=np.ones(3))
    assert loss == pytest.approx(math.log(2), rel=1e-6)
    assert metrics["rewards/margins"] == 0.0


def test_chosen_nll_override_is_used():
    cfg = CONFIGS["sigmoid_rpo"]
    x = jnp.asarray(LOGPS, jnp.float32)
    base, _, _ = _jax_loss(cfg, x)
    nll = jnp.asarray([1.0, 2.0, 50.0])
    loss, metrics, _ = _jax_loss(cfg, x, chosen_nll=nll)
    default_nll = -LOGPS[0] / LEN_C
    assert metrics["nll_loss"] == pytest.approx(1.5)
    expected = float(base) + cfg.rpo_alpha * (1.5 - default_nll[:2].mean())
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_extreme_and_all_masked_inputs_never_nan(name):
    cfg = CONFIGS[name]
    extreme = jnp.asarray(
        [[0.0, -1e4, -1e-9], [-1e4, 0.0, -1e-9], [0.0, -1e4, 0.0], [-3e3, 0.0, 0]]
    )
    for x, mask in ((extreme, np.ones(3)), (jnp.asarray(LOGPS, jnp.float32), np.zeros(3))):
        loss, metrics, _ = _jax_loss(cfg, x, mask=mask)
        grad = jax.grad(lambda y, m=mask: _jax_loss(cfg, y, mask=m)[0])(x)
        assert np.isfinite(loss) and np.all(np.isfinite(np.asarray(grad)))
        assert all(np.isfinite(v) for v in metrics.values())
    assert _jax_loss(cfg, jnp.asarray(LOGPS), mask=np.zeros(3))[0] == 0.0


def test_jit_compiles():
    cfg = CONFIGS["wdpo"]
    loss = jax.jit(lambda x: _jax_loss(cfg, x)[0])(jnp.asarray(LOGPS, jnp.float32))
    assert loss == pytest.approx(_reference(cfg, LOGPS, MASK), rel=1e-5)


def test_config_validation_and_reference_requirement():
    with pytest.raises(JalignError, match=r"loss_type='dpo'.*allowed: sigmoid, robust, ipo"):
        PreferenceLossConfig("dpo")
    with pytest.raises(JalignError, match=r"label_smoothing=0.1.*ipo"):
        PreferenceLossConfig("ipo", label_smoothing=0.1)
    with pytest.raises(JalignError, match=r"label_smoothing=0.5.*\[0, 0.5\)"):
        PreferenceLossConfig("robust", label_smoothing=0.5)
    with pytest.raises(JalignError, match="beta=0"):
        PreferenceLossConfig("sigmoid", beta=0)
    with pytest.raises(JalignError, match="dro_tau"):
        PreferenceLossConfig("kldpo", dro_tau=0.0)
    assert PreferenceLossConfig("sigmoid").needs_reference
    assert not any(PreferenceLossConfig(t).needs_reference for t in ("simpo", "orpo", "cpo"))
    pc, pr = jnp.asarray(LOGPS[0]), jnp.asarray(LOGPS[1])
    with pytest.raises(JalignError, match="needs reference log-probs"):
        preference_loss(pc, pr, None, None, LEN_C, LEN_R, PreferenceLossConfig("ipo"))


# --- KTO -------------------------------------------------------------------------------------

KTO_POLICY = np.asarray([-4.0, -6.0, -3.0, -9.0])
KTO_REF = np.asarray([-5.0, -5.0, -3.5, -8.0])
KTO_LABELS = np.asarray([1.0, 0.0, 1.0, 0.0])


def _kto_reference(policy, kl_policy, kl_ref, cfg, mask):
    z0 = max(0.0, float(np.sum(mask * (kl_policy - kl_ref)) / mask.sum()))
    r = policy - KTO_REF
    desirable = cfg.desirable_weight * (1 - sigmoid(cfg.beta * (r - z0)))
    undesirable = cfg.undesirable_weight * (1 - sigmoid(cfg.beta * (z0 - r)))
    per_example = np.where(KTO_LABELS == 1, desirable, undesirable)
    return float(np.sum(mask * per_example) / mask.sum()), z0


@pytest.mark.parametrize("kl_shift", [0.8, -0.8])  # mean KL positive / clamped at 0
def test_kto_value_and_gradient(kl_shift):
    cfg = KTOLossConfig(beta=0.7, desirable_weight=1.3, undesirable_weight=0.9)
    kl_ref = np.asarray([-6.0, -7.0, -5.0, -4.0])
    kl_policy = kl_ref + kl_shift + np.asarray([0.1, -0.1, 0.2, 5.0])  # last one is masked
    mask = np.asarray([1.0, 1.0, 1.0, 0.0])

    def loss(policy, kl_p):
        return kto_loss(policy, KTO_REF, kl_p, kl_ref, KTO_LABELS, cfg, jnp.asarray(mask))

    expected, z0 = _kto_reference(KTO_POLICY, kl_policy, kl_ref, cfg, mask)
    value, metrics, weight = loss(jnp.asarray(KTO_POLICY), jnp.asarray(kl_policy))
    assert value == pytest.approx(expected, rel=1e-5) and weight == 3
    assert metrics["kl"] == pytest.approx(z0, abs=1e-6)
    assert metrics["rewards/chosen"] == pytest.approx(0.7 * np.mean([1.0, 0.5]), rel=1e-5)
    assert metrics["rewards/rejected"] == pytest.approx(0.7 * -1.0, rel=1e-5)
    g_policy, g_kl = jax.grad(lambda p, k: loss(p, k)[0], argnums=(0, 1))(
        jnp.asarray(KTO_POLICY, jnp.float32), jnp.asarray(kl_policy, jnp.float32)
    )
    reference = numeric_grad(
        lambda p: _kto_reference(p, kl_policy, kl_ref, cfg, mask)[0], KTO_POLICY
    )
    np.testing.assert_allclose(g_policy, reference, atol=1e-5)
    assert np.all(np.asarray(g_kl) == 0.0)  # the reference point z0 carries no gradient


def test_kto_validation_and_all_masked():
    with pytest.raises(JalignError, match="undesirable_weight=0"):
        KTOLossConfig(undesirable_weight=0)
    value, metrics, weight = kto_loss(
        KTO_POLICY, KTO_REF, KTO_POLICY, KTO_REF, KTO_LABELS, KTOLossConfig(), jnp.zeros(4)
    )
    assert value == 0.0 and weight == 0.0
    assert all(np.isfinite(v) for v in metrics.values())


# --- RRHF ------------------------------------------------------------------------------------


def test_rrhf_rank_loss_by_hand():
    p = jnp.asarray([[-1.0, -2.0, -0.5], [-1.0, -2.0, -0.2]])
    scores = jnp.asarray([[1.0, 3.0, 2.0], [0.0, 0.0, 1.0]])
    best_nll = jnp.asarray([0.4, 0.6])

    def loss(p, nll):
        return rrhf_loss(p, scores, nll, rank_weight=2.0)

    # row 0, pairs (worse, better): (0,1): max(0, -1+2)=1; (0,2): 0; (2,1): max(0, -0.5+2)=1.5
    # row 1: (0,2) and (1,2) are 0 (the best candidate has the highest logp); the tied scores
    # of candidates 0 and 1 make no pair (counting it would add max(0, -1+2) = 1).
    value, metrics, weight = loss(p, best_nll)
    assert metrics["rank_loss"] == pytest.approx(2.5 / 2)
    assert metrics["nll_loss"] == pytest.approx(0.5)
    assert value == pytest.approx((2.0 * 2.5 + 0.4 + 0.6) / 2) and weight == 2
    g_p, g_nll = jax.grad(lambda a, b: loss(a, b)[0], argnums=(0, 1))(p, best_nll)
    np.testing.assert_allclose(g_p, [[1.0, -2.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(g_nll, [0.5, 0.5])
    masked, _, w = rrhf_loss(p, scores, best_nll, example_mask=jnp.asarray([0.0, 1.0]))
    assert masked == pytest.approx(0.6) and w == 1


def test_rrhf_padding_responses_make_no_pairs():
    """Padding candidates (response_mask 0) with the highest score and log-prob change nothing."""
    p = jnp.asarray([[-1.0, -2.0, -0.5], [-1.0, -2.0, -0.2]])
    scores = jnp.asarray([[1.0, 3.0, 2.0], [0.0, 0.0, 1.0]])
    best_nll = jnp.asarray([0.4, 0.6])
    padded_p = jnp.concatenate([p, jnp.asarray([[5.0], [5.0]])], axis=1)
    padded_scores = jnp.concatenate([scores, jnp.asarray([[-9.0], [-9.0]])], axis=1)
    real = jnp.asarray([[1.0, 1.0, 1.0, 0.0]] * 2)

    def padded(q):
        return rrhf_loss(q, padded_scores, best_nll, 2.0, None, real)[0]

    assert padded(padded_p) == pytest.approx(float(rrhf_loss(p, scores, best_nll, 2.0)[0]))
    assert padded(padded_p) == pytest.approx((2.0 * 2.5 + 0.4 + 0.6) / 2)  # the hand value above
    np.testing.assert_allclose(jax.grad(padded)(padded_p)[:, 3], [0.0, 0.0])

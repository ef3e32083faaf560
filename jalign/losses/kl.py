"""KL divergence to a reference policy: per-token estimators, the KL-shaped reward, and the
fixed / adaptive KL-coefficient controller."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jalign.errors import JalignError

KL_ESTIMATORS = ("k1", "k2", "k3")
KL_CONTROLLERS = ("fixed", "adaptive")
_MAX_LOG_RATIO = 20.0  # k3 exponentiates the log-ratio; beyond e^20 it would overflow


def kl_estimate(logp: jax.Array, ref_logp: jax.Array, kind: str = "k1") -> jax.Array:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi (Schulman 2020,
    "Approximating KL Divergence"). With log r = log pi_ref(y_t) - log pi(y_t):

    - k1 = -log r: unbiased, high variance, can be negative.
    - k2 = (log r)^2 / 2: biased (small bias near pi = pi_ref), low variance, >= 0.
    - k3 = (r - 1) - log r: unbiased, low variance, >= 0 (the GRPO penalty). log r is clipped
      to [-20, 20] before exponentiating, so it never overflows (no gradient past the clip).
    """
    log_ratio = jnp.asarray(ref_logp, jnp.float32) - jnp.asarray(logp, jnp.float32)
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        log_ratio = jnp.clip(log_ratio, -_MAX_LOG_RATIO, _MAX_LOG_RATIO)
        return jnp.expm1(log_ratio) - log_ratio
    raise JalignError(f"KL estimator {kind!r} is not known; allowed: {', '.join(KL_ESTIMATORS)}")


def last_token_index(mask: jax.Array) -> jax.Array:
    """[B] index of each row's last masked-in position (0 for a row with none)."""
    t = mask.shape[1]
    return t - 1 - jnp.argmax(mask[:, ::-1] > 0, axis=1)


def kl_penalized_rewards(
    scores: jax.Array,
    logp: jax.Array,
    ref_logp: jax.Array,
    mask: jax.Array,
    kl_coef: float | jax.Array,
    kind: str = "k1",
) -> tuple[jax.Array, jax.Array]:
    """Per-token rewards of RLHF-PPO (Ziegler et al. 2019; Ouyang et al. 2022):

        r_t = -kl_coef * KL_t + [t = last completion token] * score

    scores [B] (one per sequence); logp, ref_logp, mask [B, T] over completion tokens (right
    padded). Returns (rewards [B, T], per-token KL [B, T]), both 0 where mask is 0; a row with
    no completion token gets no score.
    """
    mask = jnp.asarray(mask, jnp.float32)
    kl = kl_estimate(logp, ref_logp, kind) * mask
    last = jax.nn.one_hot(last_token_index(mask), mask.shape[1], dtype=jnp.float32)
    has_tokens = (jnp.sum(mask, axis=1, keepdims=True) > 0).astype(jnp.float32)
    score = jnp.asarray(scores, jnp.float32)[:, None] * last * has_tokens
    return score - kl_coef * kl, kl


@dataclass(frozen=True)
class KLControllerConfig:
    """kind: "fixed" keeps init_coef; "adaptive" steers the observed KL towards `target` over
    roughly `horizon` samples (Ziegler et al. 2019)."""

    kind: str = "fixed"
    init_coef: float = 0.05
    target: float = 6.0
    horizon: float = 10000.0

    def __post_init__(self) -> None:
        if self.kind not in KL_CONTROLLERS:
            raise JalignError(
                f"kl controller kind={self.kind!r} is not known; allowed: {', '.join(KL_CONTROLLERS)}"
            )
        for key in ("target", "horizon"):
            if not getattr(self, key) > 0:
                raise JalignError(
                    f"kl controller {key}={getattr(self, key)!r}; allowed: a number > 0"
                )
        if not self.init_coef >= 0:
            raise JalignError(f"kl controller init_coef={self.init_coef!r}; allowed: >= 0")


def update_kl_coef(
    kl_coef: float | jax.Array,
    observed_kl: float | jax.Array,
    n_steps: int | jax.Array,
    config: KLControllerConfig,
) -> jax.Array:
    """Next KL coefficient after a batch of `n_steps` samples with mean KL `observed_kl`.

    Adaptive (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"):
        e = clip(KL / target - 1, -0.2, 0.2),   beta <- beta * (1 + e * n_steps / horizon).
    Fixed: beta unchanged.
    """
    kl_coef = jnp.asarray(kl_coef, jnp.float32)
    if config.kind == "fixed":
        return kl_coef
    error = jnp.clip(jnp.asarray(observed_kl, jnp.float32) / config.target - 1.0, -0.2, 0.2)
    return kl_coef * (1.0 + error * n_steps / config.horizon)

"""Kahneman-Tversky Optimisation: unpaired desirable / undesirable examples."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jalign.errors import JalignError


@dataclass(frozen=True)
class KTOLossConfig:
    """beta: implicit-reward temperature; desirable_weight / undesirable_weight: lambda_D and
    lambda_U, which rebalance the two kinds of examples (the paper advises
    lambda_D n_D / (lambda_U n_U) in [1, 4/3])."""

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def __post_init__(self) -> None:
        for key in ("beta", "desirable_weight", "undesirable_weight"):
            value = getattr(self, key)
            if not value > 0:
                raise JalignError(
                    f"kto loss: {key}={value!r} is not allowed; allowed: a number > 0"
                )


def kto_loss(
    policy_logps: jax.Array,
    ref_logps: jax.Array,
    kl_policy_logps: jax.Array,
    kl_ref_logps: jax.Array,
    labels: jax.Array,
    config: KTOLossConfig,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """KTO loss (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
    Optimization"), as implemented in TRL.

    Inputs [B]: summed completion log-probs of policy and reference for each (x_i, y_i); the same
    for mismatched pairs (x_i, y_j), j != i (kl_*), which estimate the reference point
    z0 = max(0, mean_i [log pi(y_j|x_i) - log pi_ref(y_j|x_i)]) with no gradient; labels 1 for
    desirable and 0 for undesirable examples; example_mask 0 on padding. With r = log pi - log
    pi_ref:

        desirable:   l = lambda_D (1 - sigmoid(beta (r - z0)))
        undesirable: l = lambda_U (1 - sigmoid(beta (z0 - r)))
        L = sum_i w_i l_i / sum_i w_i

    z0 is estimated within the micro-batch. Returns (loss, metrics, weight = number of examples).
    """
    w = jnp.ones_like(policy_logps, jnp.float32) if example_mask is None else example_mask
    w = jnp.asarray(w, jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    kl_terms = jnp.asarray(kl_policy_logps, jnp.float32) - jnp.asarray(kl_ref_logps, jnp.float32)
    z0 = jax.lax.stop_gradient(jnp.maximum(jnp.sum(w * kl_terms) / n, 0.0))
    r = jnp.asarray(policy_logps, jnp.float32) - jnp.asarray(ref_logps, jnp.float32)
    desirable = jnp.asarray(labels, jnp.float32)
    per_example = desirable * config.desirable_weight * (
        1.0 - jax.nn.sigmoid(config.beta * (r - z0))
    ) + (1.0 - desirable) * config.undesirable_weight * (
        1.0 - jax.nn.sigmoid(config.beta * (z0 - r))
    )
    w_chosen, w_rejected = w * desirable, w * (1.0 - desirable)
    rewards = config.beta * r
    chosen_mean = jnp.sum(w_chosen * rewards) / jnp.maximum(jnp.sum(w_chosen), 1.0)
    rejected_mean = jnp.sum(w_rejected * rewards) / jnp.maximum(jnp.sum(w_rejected), 1.0)
    logps = jnp.asarray(policy_logps, jnp.float32)
    metrics = {
        "kl": z0,
        "rewards/chosen": chosen_mean,
        "rewards/rejected": rejected_mean,
        "rewards/margins": chosen_mean - rejected_mean,
        "logps/chosen": jnp.sum(w_chosen * logps) / jnp.maximum(jnp.sum(w_chosen), 1.0),
        "logps/rejected": jnp.sum(w_rejected * logps) / jnp.maximum(jnp.sum(w_rejected), 1.0),
    }
    return jnp.sum(w * per_example) / n, metrics, jnp.sum(w)

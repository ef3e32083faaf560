"""The paired preference-optimisation family (DPO and its variants) behind one function.

Every variant compares a chosen completion y_c with a rejected one y_r for the same prompt x,
from sequence log-probabilities log pi(y | x) (sums over completion tokens) of the policy and,
where needed, of a frozen reference model.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jalign.errors import JalignError
from jalign.losses.logprobs import masked_mean

PREFERENCE_LOSS_TYPES = (
    "sigmoid",
    "robust",
    "ipo",
    "hinge",
    "simpo",
    "orpo",
    "cpo",
    "kldpo",
    "wdpo",
)
REFERENCE_FREE_LOSS_TYPES = ("simpo", "orpo", "cpo")
LENGTH_NORMALIZED_LOSS_TYPES = ("ipo", "simpo", "orpo")
SMOOTHED_LOSS_TYPES = ("sigmoid", "robust", "simpo", "cpo", "kldpo", "wdpo")
_LOG_PROB_CEILING = -1e-6  # ORPO: log p < 0 keeps log(1 - p) finite


def _require(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise JalignError(f"preference loss: {key}={value!r} is not allowed; allowed: {allowed}")


@dataclass(frozen=True)
class PreferenceLossConfig:
    """Hyper-parameters of `preference_loss`; validated on construction.

    loss_type: one of PREFERENCE_LOSS_TYPES. beta: inverse temperature of the implicit reward
    (IPO's tau, SLiC's 1/delta; for ORPO it only scales the logged rewards). label_smoothing:
    assumed probability eps that a label is flipped (cDPO / robust DPO; only for
    SMOOTHED_LOSS_TYPES). gamma: SimPO's target reward margin. orpo_lambda: weight of ORPO's
    odds-ratio term. cpo_alpha: weight of CPO's NLL term. rpo_alpha: weight of an extra
    chosen-NLL term for any type (RPO, Pang et al. 2024). dro_tau: KLDPO temperature.
    dro_radius: WDPO Wasserstein radius.
    """

    loss_type: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma: float = 0.5
    orpo_lambda: float = 0.1
    cpo_alpha: float = 1.0
    rpo_alpha: float = 0.0
    dro_tau: float = 1.0
    dro_radius: float = 0.1

    def __post_init__(self) -> None:
        _require(
            self.loss_type in PREFERENCE_LOSS_TYPES,
            "loss_type",
            self.loss_type,
            ", ".join(PREFERENCE_LOSS_TYPES),
        )
        _require(self.beta > 0, "beta", self.beta, "a number > 0")
        _require(
            0.0 <= self.label_smoothing < 0.5, "label_smoothing", self.label_smoothing, "[0, 0.5)"
        )
        _require(
            self.label_smoothing == 0.0 or self.loss_type in SMOOTHED_LOSS_TYPES,
            "label_smoothing",
            self.label_smoothing,
            f"0 for loss_type={self.loss_type!r} (smoothing applies to "
            f"{', '.join(SMOOTHED_LOSS_TYPES)})",
        )
        for key in ("gamma", "orpo_lambda", "cpo_alpha", "rpo_alpha", "dro_radius"):
            _require(getattr(self, key) >= 0, key, getattr(self, key), "a number >= 0")
        _require(self.dro_tau > 0, "dro_tau", self.dro_tau, "a number > 0")

    @property
    def needs_reference(self) -> bool:
        """Whether the loss uses reference-model log-probabilities."""
        return self.loss_type not in REFERENCE_FREE_LOSS_TYPES


def _smoothed_sigmoid_loss(z: jax.Array, eps: float) -> jax.Array:
    """-(1 - eps) log sigmoid(z) - eps log sigmoid(-z): logistic loss with flipped-label rate eps."""
    return -(1.0 - eps) * jax.nn.log_sigmoid(z) - eps * jax.nn.log_sigmoid(-z)


def _log1mexp(x: jax.Array) -> jax.Array:
    """log(1 - exp(x)) for x < 0, accurate on both sides of -log 2 (Maechler 2012)."""
    return jnp.where(x > -0.6931472, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


def _worst_case_kl_weights(losses: jax.Array, w: jax.Array, tau: float) -> jax.Array:
    """q_i = w_i exp(l_i / tau) / sum_j w_j exp(l_j / tau), stop-gradient; 0 when sum w = 0."""
    a = jax.lax.stop_gradient(losses) / tau
    valid = w > 0
    a = jnp.where(valid, a - jnp.max(jnp.where(valid, a, -jnp.inf)), 0.0)
    e = w * jnp.exp(a)
    return jax.lax.stop_gradient(e / jnp.maximum(jnp.sum(e), 1e-30))


def preference_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array | None,
    ref_rejected_logps: jax.Array | None,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array,
    config: PreferenceLossConfig,
    example_mask: jax.Array | None = None,
    chosen_nll: jax.Array | None = None,
) -> tuple[jax.Array, dict, jax.Array]:
    """Paired preference loss of type `config.loss_type`, averaged over pairs.

    Inputs are [B]: summed completion log-probs of policy and reference (reference ones may be
    None for reference-free types), completion lengths |y| (tokens), example_mask (0 = padding
    pair) and chosen_nll (per-pair NLL of the chosen completion; default -log pi(y_c)/|y_c|, the
    mean token NLL). With s(y) = log pi(y) - log pi_ref(y) (reference-free types drop the
    reference term; `ipo`, `simpo`, `orpo` divide each log-prob by |y| first, as TRL does),
    h = s(y_c) - s(y_r), z = beta h, eps = label_smoothing, and
    l_eps(z) = -(1 - eps) log sigmoid(z) - eps log sigmoid(-z), the per-pair losses are:

    - sigmoid: l_eps(z). DPO (Rafailov et al. 2023, "Direct Preference Optimization: Your
      Language Model is Secretly a Reward Model"); eps > 0 is conservative DPO (cDPO).
    - robust: [-(1 - eps) log sigmoid(z) + eps log sigmoid(-z)] / (1 - 2 eps), an unbiased
      estimate of the clean-label loss under label flips of rate eps (Chowdhury et al. 2024,
      "Provably Robust DPO").
    - ipo: (h - 1 / (2 beta))^2 (Azar et al. 2023, "A General Theoretical Paradigm to
      Understand Learning from Human Preferences"; beta is the paper's tau).
    - hinge: max(0, 1 - z) (SLiC-HF, Zhao et al. 2023, with beta = 1/delta).
    - simpo: l_eps(z - gamma), reference-free and length-normalised (Meng et al. 2024, "SimPO:
      Simple Preference Optimization with a Reference-Free Reward").
    - orpo: NLL(y_c) - orpo_lambda log sigmoid(log odds(y_c) - log odds(y_r)), odds(y) =
      p / (1 - p) with log p = log pi(y)/|y| (Hong et al. 2024, "ORPO: Monolithic Preference
      Optimization without Reference Model"). log p is capped at -1e-6 so log(1 - p) stays
      finite.
    - cpo: cpo_alpha NLL(y_c) + l_eps(z), reference-free on summed log-probs (Xu et al. 2024,
      "Contrastive Preference Optimization").
    - kldpo: sum_i q_i l_eps(z_i) with q_i = exp(l_i / dro_tau) / sum_j exp(l_j / dro_tau) over
      the pairs of the batch, stop-gradient on q (Xu et al. 2025, "Robust LLM Alignment via
      Distributionally Robust Direct Preference Optimization"). q is the worst-case
      distribution of the KL-penalised problem max_P E_P[l] - tau KL(P || uniform), whose
      gradient is exactly sum_i q_i grad l_i (Danskin). Approximations: a fixed tau stands in
      for the dual variable of a KL-ball radius, and the worst case is taken within each
      micro-batch, not over the data set.
    - wdpo: l_eps(z) + dro_radius |dl_eps/dz| = l_eps(z) + dro_radius |eps - sigmoid(-z)| (Xu et
      al. 2025): the first-order Wasserstein-DRO expansion E[l] + rho ||grad_x l|| (Gao et al.
      2022), with the gradient taken in closed form w.r.t. the scalar DPO logit z (a 1-D input
      space, where the norm is |.|) instead of w.r.t. the input embeddings as in the paper; the
      penalty is per pair and carries gradient.

    rpo_alpha > 0 adds rpo_alpha NLL(y_c) to any type (RPO, Pang et al. 2024, "Iterative
    Reasoning Preference Optimization"). Returns (loss, metrics, weight = number of pairs).
    Metrics use TRL's names (means over pairs): rewards/chosen = beta s(y_c), rewards/rejected,
    rewards/margins, rewards/accuracies (chosen reward > rejected reward), logps/chosen and
    logps/rejected (summed policy log-probs), plus nll_loss when an NLL term is used,
    log_odds_ratio / log_odds_chosen (orpo), dro/max_weight (kldpo), dro/penalty (wdpo).
    """
    cfg = config
    if cfg.needs_reference and (ref_chosen_logps is None or ref_rejected_logps is None):
        raise JalignError(
            f"preference loss: loss_type={cfg.loss_type!r} needs reference log-probs; "
            f"reference-free types: {', '.join(REFERENCE_FREE_LOSS_TYPES)}"
        )
    raw_chosen = jnp.asarray(policy_chosen_logps, jnp.float32)
    raw_rejected = jnp.asarray(policy_rejected_logps, jnp.float32)
    n_chosen = jnp.maximum(jnp.asarray(chosen_lengths, jnp.float32), 1.0)
    n_rejected = jnp.maximum(jnp.asarray(rejected_lengths, jnp.float32), 1.0)
    norm_chosen, norm_rejected = (
        (n_chosen, n_rejected) if cfg.loss_type in LENGTH_NORMALIZED_LOSS_TYPES else (1.0, 1.0)
    )
    s_chosen, s_rejected = raw_chosen / norm_chosen, raw_rejected / norm_rejected
    if cfg.needs_reference:
        s_chosen = s_chosen - jnp.asarray(ref_chosen_logps, jnp.float32) / norm_chosen
        s_rejected = s_rejected - jnp.asarray(ref_rejected_logps, jnp.float32) / norm_rejected
    h = s_chosen - s_rejected
    z = cfg.beta * h
    eps = cfg.label_smoothing
    nll = -raw_chosen / n_chosen if chosen_nll is None else jnp.asarray(chosen_nll, jnp.float32)
    w = jnp.ones_like(z) if example_mask is None else jnp.asarray(example_mask, jnp.float32)
    extra: dict[str, jax.Array] = {}

    kind = cfg.loss_type
    if kind in ("sigmoid", "kldpo"):
        per_pair = _smoothed_sigmoid_loss(z, eps)
    elif kind == "robust":
        per_pair = (-(1.0 - eps) * jax.nn.log_sigmoid(z) + eps * jax.nn.log_sigmoid(-z)) / (
            1.0 - 2.0 * eps
        )
    elif kind == "ipo":
        per_pair = (h - 1.0 / (2.0 * cfg.beta)) ** 2
    elif kind == "hinge":
        per_pair = jax.nn.relu(1.0 - z)
    elif kind == "simpo":
        per_pair = _smoothed_sigmoid_loss(z - cfg.gamma, eps)
    elif kind == "orpo":
        log_p_chosen = jnp.minimum(s_chosen, _LOG_PROB_CEILING)
        log_p_rejected = jnp.minimum(s_rejected, _LOG_PROB_CEILING)
        log_odds = (log_p_chosen - log_p_rejected) - (
            _log1mexp(log_p_chosen) - _log1mexp(log_p_rejected)
        )
        ratio_term = jax.nn.log_sigmoid(log_odds)
        per_pair = nll - cfg.orpo_lambda * ratio_term
        extra["log_odds_ratio"] = masked_mean(ratio_term, w)
        extra["log_odds_chosen"] = masked_mean(log_odds, w)
    elif kind == "cpo":
        per_pair = cfg.cpo_alpha * nll + _smoothed_sigmoid_loss(z, eps)
    else:  # wdpo
        penalty = cfg.dro_radius * jnp.abs(eps - jax.nn.sigmoid(-z))
        per_pair = _smoothed_sigmoid_loss(z, eps) + penalty
        extra["dro/penalty"] = masked_mean(penalty, w)
    if cfg.rpo_alpha > 0:
        per_pair = per_pair + cfg.rpo_alpha * nll
    if kind in ("orpo", "cpo") or cfg.rpo_alpha > 0:
        extra["nll_loss"] = masked_mean(nll, w)

    if kind == "kldpo":
        q = _worst_case_kl_weights(per_pair, w, cfg.dro_tau)
        loss = jnp.sum(q * per_pair)
        extra["dro/max_weight"] = jnp.max(q)
    else:
        loss = masked_mean(per_pair, w)

    chosen_rewards, rejected_rewards = cfg.beta * s_chosen, cfg.beta * s_rejected
    metrics = {
        "rewards/chosen": masked_mean(chosen_rewards, w),
        "rewards/rejected": masked_mean(rejected_rewards, w),
        "rewards/margins": masked_mean(chosen_rewards - rejected_rewards, w),
        "rewards/accuracies": masked_mean(
            (chosen_rewards > rejected_rewards).astype(jnp.float32), w
        ),
        "logps/chosen": masked_mean(raw_chosen, w),
        "logps/rejected": masked_mean(raw_rejected, w),
        **extra,
    }
    return loss, metrics, jnp.sum(w)

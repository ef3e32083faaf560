"""Losses: pure functions, one formula each, float32; every docstring cites its paper."""

from jalign.losses.advantages import (
    GROUP_ADVANTAGE_MODES,
    gae,
    group_advantages,
    masked_whiten,
    normalize_scores,
    penalize_missing_eos,
)
from jalign.losses.aggregation import AGGREGATION_MODES, aggregate
from jalign.losses.kl import (
    KL_CONTROLLERS,
    KL_ESTIMATORS,
    KLControllerConfig,
    kl_estimate,
    kl_penalized_rewards,
    last_token_index,
    update_kl_coef,
)
from jalign.losses.kto import KTOLossConfig, kto_loss
from jalign.losses.logprobs import (
    chunked_token_logprobs,
    masked_mean,
    masked_sum,
    shifted_entropy,
    shifted_logprobs,
    token_entropy,
    token_logprobs,
)
from jalign.losses.ppo import explained_variance, ppo_policy_loss, ppo_value_loss
from jalign.losses.preference import (
    PREFERENCE_LOSS_TYPES,
    REFERENCE_FREE_LOSS_TYPES,
    PreferenceLossConfig,
    preference_loss,
)
from jalign.losses.ranking import best_and_worst, ranking_comparisons
from jalign.losses.reward import (
    bradley_terry_loss,
    pairs_as_rankings,
    ranked_bradley_terry_loss,
)
from jalign.losses.rrhf import rrhf_loss
from jalign.losses.sft import SFT_NORMALIZATIONS, sft_loss

__all__ = [
    "AGGREGATION_MODES",
    "GROUP_ADVANTAGE_MODES",
    "KL_CONTROLLERS",
    "KL_ESTIMATORS",
    "PREFERENCE_LOSS_TYPES",
    "REFERENCE_FREE_LOSS_TYPES",
    "SFT_NORMALIZATIONS",
    "KLControllerConfig",
    "KTOLossConfig",
    "PreferenceLossConfig",
    "aggregate",
    "best_and_worst",
    "bradley_terry_loss",
    "chunked_token_logprobs",
    "explained_variance",
    "gae",
    "group_advantages",
    "kl_estimate",
    "kl_penalized_rewards",
    "kto_loss",
    "last_token_index",
    "masked_mean",
    "masked_sum",
    "masked_whiten",
    "normalize_scores",
    "pairs_as_rankings",
    "penalize_missing_eos",
    "ppo_policy_loss",
    "ppo_value_loss",
    "preference_loss",
    "ranked_bradley_terry_loss",
    "ranking_comparisons",
    "rrhf_loss",
    "sft_loss",
    "shifted_entropy",
    "shifted_logprobs",
    "token_entropy",
    "token_logprobs",
    "update_kl_coef",
]

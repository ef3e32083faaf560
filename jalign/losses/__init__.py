"""Losses: pure functions, one formula each, float32; every docstring cites its paper."""

from jalign.losses.logprobs import (
    chunked_shifted_logprobs,
    masked_mean,
    masked_sum,
    shifted_logprobs,
    token_entropy,
    token_logprobs,
)
from jalign.losses.reward import bradley_terry_loss
from jalign.losses.sft import SFT_NORMALIZATIONS, sft_loss, token_accuracy

__all__ = [
    "SFT_NORMALIZATIONS",
    "bradley_terry_loss",
    "chunked_shifted_logprobs",
    "masked_mean",
    "masked_sum",
    "sft_loss",
    "shifted_logprobs",
    "token_accuracy",
    "token_entropy",
    "token_logprobs",
]

"""KL divergence of a policy from a reference, estimated on the policy's own samples.

For completions y ~ pi(. | x) the sequence-level KL is

    KL(pi || pi_ref)(x) = E_{y ~ pi} [ sum_t log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t) ]

and the estimator is the sample mean over prompts and samples of the bracket (the "k1"
estimator, Schulman 2020, http://joschu.net/blog/kl-approx.html): unbiased, but single samples
can be negative, so the standard error is reported with it. Both log-probabilities are
teacher-forced (`jalign.train.forward.target_logprobs`) at the sampling temperature, i.e. of
softmax(logits / T); top-k / top-p / min-p truncation is not applied, so for truncated sampling
this is the KL of the temperature-T policies on samples from the truncated one. Greedy samples
(T = 0) are scored at T = 1 and give the log-ratio on the greedy completions, not a KL.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx

from jalign.eval.models import EvalModel
from jalign.eval.rewards import SCORE_ROWS, check_vocab
from jalign.eval.rollouts import Rollouts
from jalign.eval.sequences import completion_sequences, map_rows
from jalign.losses import masked_sum
from jalign.train.forward import target_logprobs


@functools.partial(jax.jit, static_argnums=0)
def _completion_logprob_sums(graphdef: nnx.GraphDef, params, batch: dict, temperature):
    out = target_logprobs(graphdef, params, batch, temperature=temperature)
    return masked_sum(out.logps, out.mask, axis=1)


def scoring_temperature(temperature: float) -> float:
    """The temperature log-probabilities are taken at: the sampling one, 1 for greedy."""
    return temperature if temperature > 0 else 1.0


def completion_logprobs(
    model: EvalModel, rollouts: Rollouts, temperature: float, rows: int = SCORE_ROWS
) -> np.ndarray:
    """sum_t log p(y_t | x, y_<t) over each row's completion tokens (EOS included), float64."""
    batch = completion_sequences(rollouts)
    t = np.float32(scoring_temperature(temperature))
    return map_rows(
        lambda b: _completion_logprob_sums(model.graphdef, model.params, b, t), batch, rows
    ).astype(np.float64)


def sequence_kl(
    policy: EvalModel,
    reference: EvalModel,
    rollouts: Rollouts,
    temperature: float,
    rows: int = SCORE_ROWS,
) -> np.ndarray:
    """Each sample's log pi(y|x) - log pi_ref(y|x) (float64 [R]); its mean is the KL estimate."""
    check_vocab(rollouts, reference, "reference")
    return completion_logprobs(policy, rollouts, temperature, rows) - completion_logprobs(
        reference, rollouts, temperature, rows
    )

"""Sampling from the trainer's params: a jit-compiled, sharded KV-cache decoder.

`generate(graphdef, params, make_prompt_batch(token_lists), SamplingParams(...), rng)` returns a
`SampleOutput` of token ids, per-token log-probs and masks; `sampling_logprobs` recomputes the
reported log-probs from teacher-forced logits (see `jalign.sampling.params` for their meaning).
"""

from jalign.sampling.decode import SampleOutput, cache_sharding, generate
from jalign.sampling.distribution import sampling_logprobs
from jalign.sampling.params import SamplingParams
from jalign.sampling.prompts import PromptBatch, make_prompt_batch

__all__ = [
    "PromptBatch",
    "SampleOutput",
    "SamplingParams",
    "cache_sharding",
    "generate",
    "make_prompt_batch",
    "sampling_logprobs",
]

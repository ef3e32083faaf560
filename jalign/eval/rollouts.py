"""Sample a policy on a prompt set and score what it wrote.

Rollouts stay in token ids: the sampler's ids are decoded to text only for a reward function
that reads text (a verifier such as the demo task's gold reward).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from jalign.data import pad_token_id
from jalign.sampling import SamplingParams, generate, make_prompt_batch

RewardFn = Callable[[list[str], list[str]], np.ndarray]


@dataclasses.dataclass
class Rollouts:
    """Completions of `n` samples per prompt, rows [i*n:(i+1)*n] for prompt i."""

    prompts: list[str]
    completions: list[str]
    tokens: np.ndarray  # [R, max_new]
    logprobs: np.ndarray  # [R, max_new]
    mask: np.ndarray  # [R, max_new]
    prompt_ids: np.ndarray  # [R, P]
    prompt_mask: np.ndarray  # [R, P]
    finished_with_eos: np.ndarray  # [R]

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)


def sample_rollouts(
    graphdef: nnx.GraphDef,
    params: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    sampling: SamplingParams,
    batch_size: int,
    prompt_buckets: Sequence[int] | None = None,
    rng: jax.Array | None = None,
    mesh: Any = None,
) -> list[Rollouts]:
    """Sample every prompt (in batches of `batch_size` prompts; the last batch is padded with
    repeats so every call has the same shape) and return one `Rollouts` per batch."""
    rng = jax.random.key(sampling.seed) if rng is None else rng
    pad = pad_token_id(tokenizer)
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        real = len(chunk)
        chunk += [chunk[-1]] * (batch_size - real)
        ids = [tokenizer.encode(p) for p in chunk]
        batch = make_prompt_batch(ids, prompt_buckets, pad)
        rng, key = jax.random.split(rng)
        result = jax.device_get(generate(graphdef, params, batch, sampling, key, mesh=mesh))
        rows = real * sampling.n
        tokens = np.asarray(result.tokens)[:rows]
        lengths = np.asarray(result.lengths)[:rows]
        texts = [
            tokenizer.decode(tokens[r, : lengths[r]].tolist(), skip_special_tokens=True)
            for r in range(rows)
        ]
        out.append(
            Rollouts(
                prompts=[p for p in chunk[:real] for _ in range(sampling.n)],
                completions=texts,
                tokens=tokens,
                logprobs=np.asarray(result.logprobs)[:rows],
                mask=np.asarray(result.mask)[:rows],
                prompt_ids=np.asarray(result.prompt_ids)[:rows],
                prompt_mask=np.asarray(result.prompt_mask)[:rows],
                finished_with_eos=np.asarray(result.finished_with_eos)[:rows],
            )
        )
    return out


def score_policy(
    graphdef: nnx.GraphDef,
    params: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    sampling: SamplingParams,
    batch_size: int,
    prompt_buckets: Sequence[int] | None = None,
    mesh: Any = None,
) -> dict[str, float]:
    """Mean reward, mean completion length and EOS rate of the policy's samples on `prompts`."""
    rollouts = sample_rollouts(
        graphdef, params, tokenizer, prompts, sampling, batch_size, prompt_buckets, mesh=mesh
    )
    rewards = np.concatenate([reward_fn(r.prompts, r.completions) for r in rollouts])
    lengths = np.concatenate([r.lengths for r in rollouts])
    eos = np.concatenate([r.finished_with_eos for r in rollouts])
    return {
        "reward": float(rewards.mean()),
        "length": float(lengths.mean()),
        "eos_rate": float(eos.mean()),
    }

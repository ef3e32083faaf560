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
from jalign.sampling import SampleOutput, SamplingParams, generate, make_prompt_batch
from jalign.sharding import host_array

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


def rollouts_from_output(
    prompts: Sequence[Any], output: SampleOutput, tokenizer: Any, rows: int
) -> Rollouts:
    """The first `rows` rows of a `generate` output (on the host), decoded; `prompts` has one
    entry per prompt of those rows."""
    output = jax.tree.map(host_array, output)
    tokens = np.asarray(output.tokens)[:rows]
    lengths = np.asarray(output.lengths)[:rows]
    n = rows // len(prompts)
    return Rollouts(
        prompts=[p for p in prompts for _ in range(n)],
        completions=[
            tokenizer.decode(tokens[r, : lengths[r]].tolist(), skip_special_tokens=True)
            for r in range(rows)
        ],
        tokens=tokens,
        logprobs=np.asarray(output.logprobs)[:rows],
        mask=np.asarray(output.mask)[:rows],
        prompt_ids=np.asarray(output.prompt_ids)[:rows],
        prompt_mask=np.asarray(output.prompt_mask)[:rows],
        finished_with_eos=np.asarray(output.finished_with_eos)[:rows],
    )


def concat_rollouts(parts: Sequence[Rollouts]) -> Rollouts:
    """One `Rollouts` of all rows; prompt columns are left-padded (mask 0) to the widest part."""
    width = max(r.prompt_ids.shape[1] for r in parts)

    def left_pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (width - x.shape[1], 0)))

    return Rollouts(
        prompts=[p for r in parts for p in r.prompts],
        completions=[c for r in parts for c in r.completions],
        tokens=np.concatenate([r.tokens for r in parts]),
        logprobs=np.concatenate([r.logprobs for r in parts]),
        mask=np.concatenate([r.mask for r in parts]),
        prompt_ids=np.concatenate([left_pad(r.prompt_ids) for r in parts]),
        prompt_mask=np.concatenate([left_pad(r.prompt_mask) for r in parts]),
        finished_with_eos=np.concatenate([r.finished_with_eos for r in parts]),
    )


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
    encode: Callable[[Any], Sequence[int]] | None = None,
) -> list[Rollouts]:
    """Sample every prompt (in batches of `batch_size` prompts; the last batch is padded with
    repeats so every call has the same shape) and return one `Rollouts` per batch.

    `encode` turns a prompt into its token ids (default `tokenizer.encode`; e.g. a
    `TextEncoder.prompt` for chat-form prompts, as training encodes them)."""
    rng = jax.random.key(sampling.seed) if rng is None else rng
    encode = tokenizer.encode if encode is None else encode
    pad = pad_token_id(tokenizer)
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        real = len(chunk)
        chunk += [chunk[-1]] * (batch_size - real)
        batch = make_prompt_batch([encode(p) for p in chunk], prompt_buckets, pad)
        rng, key = jax.random.split(rng)
        result = generate(graphdef, params, batch, sampling, key, mesh=mesh)
        out.append(rollouts_from_output(chunk[:real], result, tokenizer, real * sampling.n))
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

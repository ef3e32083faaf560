"""`jalign generate`: text in, sampled text (and token ids / logprobs) out."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jalign.data import encode_prompt, load_tokenizer, pad_token_id, stop_token_ids
from jalign.errors import JalignError
from jalign.eval.best_of import best_of_n
from jalign.eval.rewards import Scorer, load_scorer
from jalign.eval.rollouts import rollouts_from_output
from jalign.interop import load_model_source
from jalign.sampling import SamplingParams, generate, make_prompt_batch


def encode_prompts(tokenizer, prompts: list[str], chat: bool) -> list[list[int]]:
    """Token ids of each prompt; with `chat`, a user turn rendered by the chat template."""
    if not prompts:
        raise JalignError("no prompt given; pass --prompt TEXT (repeat it for a batch)")
    if chat:
        return [encode_prompt(tokenizer, [{"role": "user", "content": p}]) for p in prompts]
    return [encode_prompt(tokenizer, p) for p in prompts]


def _completion(tokenizer, tokens, logprobs, length: int, finished: bool) -> dict[str, Any]:
    row_ids = tokens[:length].tolist()
    return {
        "text": tokenizer.decode(row_ids, skip_special_tokens=True),
        "token_ids": row_ids,
        "logprobs": [round(float(x), 6) for x in logprobs[:length]],
        "finished_with_eos": bool(finished),
    }


def run_generate(
    model: str,
    prompts: list[str],
    chat: bool = False,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    n: int = 1,
    seed: int = 0,
    best_of: int = 1,
    reward: str | Scorer | None = None,
) -> list[dict[str, Any]]:
    """Generate for each prompt; returns one dict per prompt with its `n` completions.

    With `best_of > 1`: sample that many per prompt, score them with `reward` (a
    "module:function" of (prompts, completions), a reward-model folder, or a `Scorer`) and keep
    the best one, with its "score"; the prompt's dict also lists every "candidate_scores"."""
    if best_of > 1 and (reward is None or n != 1 or temperature == 0):
        raise JalignError(
            f"--best-of {best_of} needs --reward (a module:function or reward-model folder), "
            f"--n 1 and --temperature > 0 (greedy samples are all the same); got reward="
            f"{reward!r}, n={n}, temperature={temperature}"
        )
    if best_of < 1:
        raise JalignError(f"--best-of {best_of} is not allowed; allowed: an integer >= 1")
    folder, cfg, graphdef, params = load_model_source(model)
    tokenizer = load_tokenizer(folder)
    ids = encode_prompts(tokenizer, prompts, chat)
    samples = max(n, best_of)
    params_s = SamplingParams(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        n=samples,
        max_new_tokens=max_new_tokens,
        eos_ids=stop_token_ids(cfg.eos_token_ids, tokenizer),
        seed=seed,
    )
    batch = make_prompt_batch(ids, pad_id=pad_token_id(tokenizer))
    out = jax.device_get(generate(graphdef, params, batch, params_s))
    tokens, logprobs, lengths = (np.asarray(x) for x in (out.tokens, out.logprobs, out.lengths))
    finished = np.asarray(out.finished_with_eos)

    def completion(row: int) -> dict[str, Any]:
        return _completion(tokenizer, tokens[row], logprobs[row], int(lengths[row]), finished[row])

    results = []
    if best_of > 1:
        scorer = load_scorer(reward) if isinstance(reward, str) else reward
        scores = scorer(rollouts_from_output(prompts, out, tokenizer, len(prompts) * best_of))
        for i, (prompt, row) in enumerate(zip(prompts, best_of_n(scores, best_of), strict=True)):
            results.append(
                {
                    "prompt": prompt,
                    "prompt_ids": ids[i],
                    "completions": [{**completion(row), "score": float(scores[row])}],
                    "candidate_scores": [float(x) for x in scores[i * best_of : (i + 1) * best_of]],
                }
            )
        return results
    for i, prompt in enumerate(prompts):
        results.append(
            {
                "prompt": prompt,
                "prompt_ids": ids[i],
                "completions": [completion(row) for row in range(i * n, (i + 1) * n)],
            }
        )
    return results

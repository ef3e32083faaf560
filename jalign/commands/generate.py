"""`jalign generate`: text in, sampled text (and token ids / logprobs) out."""

from __future__ import annotations

from typing import Any

import numpy as np

from jalign.data import load_tokenizer, pad_token_id
from jalign.errors import JalignError
from jalign.interop import load_model_source
from jalign.sampling import SamplingParams, generate, make_prompt_batch


def encode_prompts(tokenizer, prompts: list[str], chat: bool) -> list[list[int]]:
    """Token ids of each prompt; with `chat`, rendered through the tokenizer's chat template."""
    if not prompts:
        raise JalignError("no prompt given; pass --prompt TEXT (repeat it for a batch)")
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise JalignError("--chat: this tokenizer has no chat template")
        return [
            list(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}],
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=False,
                )
            )
            for p in prompts
        ]
    return [tokenizer.encode(p) for p in prompts]


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
) -> list[dict[str, Any]]:
    """Generate for each prompt; returns one dict per prompt with its `n` completions."""
    folder, cfg, graphdef, params = load_model_source(model)
    tokenizer = load_tokenizer(folder)
    ids = encode_prompts(tokenizer, prompts, chat)
    eos = tuple(cfg.eos_token_ids) or (
        (tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ()
    )
    params_s = SamplingParams(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        n=n,
        max_new_tokens=max_new_tokens,
        eos_ids=eos,
        seed=seed,
    )
    batch = make_prompt_batch(ids, pad_id=pad_token_id(tokenizer))
    out = generate(graphdef, params, batch, params_s)
    tokens, logprobs, lengths = (np.asarray(x) for x in (out.tokens, out.logprobs, out.lengths))
    finished = np.asarray(out.finished_with_eos)
    results = []
    for i, prompt in enumerate(prompts):
        completions = []
        for row in range(i * n, (i + 1) * n):
            length = int(lengths[row])
            row_ids = tokens[row, :length].tolist()
            completions.append(
                {
                    "text": tokenizer.decode(row_ids, skip_special_tokens=True),
                    "token_ids": row_ids,
                    "logprobs": [round(float(x), 6) for x in logprobs[row, :length]],
                    "finished_with_eos": bool(finished[row]),
                }
            )
        results.append({"prompt": prompt, "prompt_ids": ids[i], "completions": completions})
    return results

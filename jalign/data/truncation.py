"""Truncation policy: fit token sequences into `max_length` / `max_prompt_length`.

For a prompt + response sequence (prompt = the tokens before the first target):
1. a prompt longer than `max_prompt_length` loses its start ("keep_end") or its end
   ("keep_start"), or the example is dropped ("drop");
2. a prompt that leaves no room for a response within `max_length` is refused
   (`prompt_too_long`; `too_long` under "drop");
3. a response that does not fit is cut at its end (dropped under "drop");
4. a sequence left with no target token is refused (`no_targets`).
Refusals raise RecordError; the caller decides between error and skip. The same rules applied
to the sequences of a preference pair or ranked set give them identical prompts.
"""

from __future__ import annotations

import numpy as np

from jalign.data.config import DataConfig
from jalign.data.encode import Tokens
from jalign.data.stats import NO_TARGETS, PROMPT_TOO_LONG, TOO_LONG, RecordError


def _cut(ids: np.ndarray, limit: int, config: DataConfig, what: str) -> np.ndarray:
    """`ids` cut to `limit` tokens per truncation_mode (a prompt's cut)."""
    if len(ids) <= limit:
        return ids
    if config.truncation_mode == "drop":
        raise RecordError(
            TOO_LONG, f"{what} has {len(ids)} tokens > {limit}; dropped (truncation_mode='drop')"
        )
    return ids[-limit:] if config.truncation_mode == "keep_end" else ids[:limit]


def truncate_prompt(ids: np.ndarray, config: DataConfig) -> np.ndarray:
    """A prompt for sampling, cut to `config.prompt_limit` tokens."""
    return _cut(ids, config.prompt_limit, config, "the prompt")


def truncate_sequence(tokens: Tokens, config: DataConfig) -> Tokens:
    """Apply steps 1-4 above to one prompt + response sequence."""
    prompt_ids = tokens.ids[: tokens.prompt_length]
    prompt_targets = tokens.targets[: tokens.prompt_length]  # all False
    if config.max_prompt_length is not None:
        prompt_ids = _cut(prompt_ids, config.max_prompt_length, config, "the prompt")
        prompt_targets = prompt_targets[: len(prompt_ids)]
    room = config.max_length - len(prompt_ids)
    if room <= 0:
        raise RecordError(
            TOO_LONG if config.truncation_mode == "drop" else PROMPT_TOO_LONG,
            f"the prompt has {len(prompt_ids)} tokens, leaving no room for a response within "
            f"max_length={config.max_length}; expected a shorter prompt (or set "
            "data.max_prompt_length to cut prompts)",
        )
    response_ids = tokens.ids[tokens.prompt_length :]
    if len(response_ids) > room and config.truncation_mode == "drop":
        raise RecordError(
            TOO_LONG,
            f"prompt + response have {len(tokens.ids)} tokens > max_length={config.max_length}; "
            "dropped (truncation_mode='drop')",
        )
    cut = Tokens(
        ids=np.concatenate([prompt_ids, response_ids[:room]]),
        targets=np.concatenate([prompt_targets, tokens.targets[tokens.prompt_length :][:room]]),
        prompt_length=len(prompt_ids),
    )
    if not cut.targets[1:].any():
        raise RecordError(
            NO_TARGETS, "no response token is left to train on; expected a non-empty response"
        )
    return cut

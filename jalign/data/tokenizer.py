"""Loading a tokenizer from a local folder (never from the hub, never with remote code)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from jalign.errors import JalignError

_ALLOWED = "a local folder written by a tokenizer's save_pretrained (tokenizer.json, tokenizer_config.json)"


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained(path, local_files_only=True)` with errors that say what to
    fix. Custom tokenizer code shipped in the folder is never run (trust_remote_code=False)."""
    folder = Path(path)
    if not folder.is_dir():
        raise JalignError(f"tokenizer folder {folder} does not exist; allowed: {_ALLOWED}")
    try:
        return AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        message = " ".join(str(e).split())
        raise JalignError(
            f"cannot load a tokenizer from {folder}: {message}; allowed: {_ALLOWED}"
        ) from e


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id written into padding (its value is irrelevant: padding has segment id 0)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def stop_token_ids(
    model_eos_ids: Sequence[int], tokenizer: PreTrainedTokenizerBase
) -> tuple[int, ...]:
    """The ids that end a sampled response: the model config's `eos_token_id`(s) (generation
    configs often list several, e.g. Llama 3's end-of-turn), else the tokenizer's EOS."""
    if model_eos_ids:
        return tuple(int(i) for i in model_eos_ids)
    return () if tokenizer.eos_token_id is None else (int(tokenizer.eos_token_id),)


def adds_bos_by_default(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer itself puts BOS before a text (as Llama's does and GPT-2's doesn't)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    generation_prompt: bool = True,
) -> str:
    """A conversation rendered to text by the tokenizer's chat template (tokenize it with
    `add_special_tokens=False`: the template writes its own special tokens)."""
    if tokenizer.chat_template is None:
        raise JalignError(
            "chat-form input (message lists) needs a chat template, and the tokenizer has none; "
            "allowed: plain-text input, or a tokenizer folder with a chat_template"
        )
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as e:  # jinja2 raises many types, incl. the template's raise_exception
        raise JalignError(f"the chat template failed to render a conversation: {e}") from e


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict[str, Any]]
) -> list[int]:
    """A prompt's token ids for sampling: plain text as the tokenizer encodes it by default, a
    message list rendered by the chat template with the generation prompt (whose special tokens
    the template writes itself, so none are added)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    return list(tokenizer(render_chat(tokenizer, prompt), add_special_tokens=False)["input_ids"])

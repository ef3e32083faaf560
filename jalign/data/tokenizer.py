"""Loading a tokenizer from a local folder (never from the hub, never with remote code)."""

from __future__ import annotations

import os
from pathlib import Path

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


def adds_bos_by_default(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer itself puts BOS before a text (as Llama's does and GPT-2's doesn't)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]

"""Text -> token ids, marking which tokens are targets (response tokens the loss trains on).

Plain form: `[BOS] + prompt + response + [EOS]`, with the response and EOS as targets (BOS and
EOS per `add_bos` / `add_eos`).

Chat form: the tokenizer's chat template renders the conversation. Target spans are found by
rendering it prefix by prefix: for each assistant turn k that is a target,

    before_k  = render(messages[:k], add_generation_prompt=True)
    through_k = render(messages[:k + 1])

and the text between them (the turn's content and end-of-turn marker) is target text. Each
rendering must extend the previous one (checked; templates that rewrite earlier turns, e.g.
by stripping old reasoning, are refused). The text is split at these boundaries and each piece
is tokenized on its own, so no token straddles a prompt/response boundary and the prompt's
tokens are exactly what the model sees when sampling from `before_k`. No `{% generation %}`
markers are needed.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from transformers import PreTrainedTokenizerBase

from jalign.data.config import DataConfig
from jalign.data.schemas import Message, Text
from jalign.data.tokenizer import adds_bos_by_default, render_chat
from jalign.errors import JalignError


@dataclasses.dataclass(frozen=True)
class Tokens:
    """ids int32 [L]; targets bool [L] (True on response tokens to train on); prompt_length:
    the number of tokens before the first target token."""

    ids: np.ndarray
    targets: np.ndarray
    prompt_length: int


class TextEncoder:
    """Tokenizes prompts and (prompt, response) pairs, in plain or chat form."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: DataConfig):
        self.tokenizer = tokenizer
        add_bos = config.add_bos if config.add_bos is not None else adds_bos_by_default(tokenizer)
        self.bos = self._special_id("bos", "add_bos") if add_bos else []
        self.eos = self._special_id("eos", "add_eos") if config.add_eos else []

    def _special_id(self, name: str, key: str) -> list[int]:
        token_id = getattr(self.tokenizer, f"{name}_token_id")
        if token_id is None:
            raise JalignError(
                f"config key 'data.{key}' is True but the tokenizer has no {name}_token; "
                f"allowed: data.{key}=False, or a tokenizer that defines {name}_token"
            )
        return [int(token_id)]

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _render(self, messages: list[Message], generation_prompt: bool) -> str:
        return render_chat(self.tokenizer, messages, generation_prompt)

    def _chat_pieces(self, messages: list[Message], first_target: int) -> list[tuple[str, bool]]:
        """The rendered conversation split into (text, is_target) pieces; the targets are the
        assistant turns at index >= first_target."""
        full = self._render(messages, generation_prompt=False)
        pieces, done = [], 0
        for k in range(first_target, len(messages)):
            if messages[k]["role"] != "assistant":
                continue
            before = self._render(messages[:k], generation_prompt=True)
            through = self._render(messages[: k + 1], generation_prompt=False)
            if not (
                len(before) >= done and full.startswith(through) and through.startswith(before)
            ):
                raise JalignError(
                    f"the chat template renders message {k} (assistant) inconsistently: the "
                    "rendering of a conversation prefix is not the start of the rendering of the "
                    "whole conversation, so the assistant tokens cannot be located; allowed: a "
                    "chat template whose renderings extend those of their prefixes"
                )
            pieces += [(full[done : len(before)], False), (full[len(before) : len(through)], True)]
            done = len(through)
        return [*pieces, (full[done:], False)]

    def _from_pieces(self, pieces: list[tuple[str, bool]], head: list[int]) -> Tokens:
        pieces = [(text, target) for text, target in pieces if text]
        piece_ids = self._tokenize([text for text, _ in pieces])
        ids = np.array(list(itertools.chain(head, *piece_ids)), dtype=np.int32)
        targets = np.repeat(
            [False, *(target for _, target in pieces)], [len(head), *map(len, piece_ids)]
        )
        first = np.flatnonzero(targets)
        return Tokens(ids, targets, int(first[0]) if first.size else len(ids))

    def sequence(self, prompt: Text, response: Text) -> Tokens:
        """Prompt then response (both strings, or both message lists)."""
        if isinstance(prompt, str):
            tokens = self._from_pieces([(prompt, False), (response, True)], head=self.bos)
            return Tokens(
                ids=np.concatenate([tokens.ids, np.array(self.eos, dtype=np.int32)]),
                targets=np.concatenate([tokens.targets, np.ones(len(self.eos), dtype=bool)]),
                prompt_length=tokens.prompt_length,
            )
        return self._from_pieces(self._chat_pieces([*prompt, *response], len(prompt)), head=[])

    def prompt(self, prompt: Text) -> np.ndarray:
        """A prompt's ids as the model sees them before sampling its response (int32 [P])."""
        if isinstance(prompt, str):
            return self._from_pieces([(prompt, False)], head=self.bos).ids
        return self._from_pieces([(self._render(prompt, generation_prompt=True), False)], []).ids

"""One raw record -> the arrays of one example (the per-record stage of the pipeline).

    parse (JSONL) -> validate (schemas) -> tokenize (encode) -> truncate -> arrays

A record that cannot be used raises JalignError "<where>: <what is wrong>; expected <format>"
under `on_error="raise"`, or becomes `Rejected` (counted by the pipeline) under "skip".
Records dropped by `truncation_mode="drop"` are always `Rejected`, never an error.

Per-example arrays (unpadded; the batcher pads them):
    sft         input_ids int32 [L], loss_mask float32 [L]
    unpaired    the same + labels bool []
    preference  chosen_input_ids, chosen_loss_mask, rejected_input_ids, rejected_loss_mask,
                prompt_lengths int32 []
    ranked      input_ids, loss_mask: tuples of k arrays; scores float32 [k]
    prompt      prompt_ids int32 [P], prompt (the record's prompt), pass-through fields
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from jalign.data.config import DataConfig
from jalign.data.encode import TextEncoder, Tokens
from jalign.data.readers import RawRecord, parse_record
from jalign.data.schemas import (
    INDEXED_KINDS,
    PREFERENCE,
    PROMPT,
    RANKED,
    RECORD_INDEX,
    SFT,
    UNPAIRED,
    VALIDATORS,
    Example,
)
from jalign.data.stats import MALFORMED, TOO_LONG, RecordError
from jalign.data.truncation import truncate_prompt, truncate_sequence
from jalign.errors import JalignError


@dataclasses.dataclass(frozen=True)
class Encoded:
    arrays: dict[str, Any]
    truncated: bool


@dataclasses.dataclass(frozen=True)
class Rejected:
    reason: str
    message: str  # "<where>: <what is wrong>"


def guarded(raw: RawRecord, step: Callable[[RawRecord], Any], on_error: str) -> Any:
    """`step(raw)`, with a RecordError turned into a JalignError ("raise") or `Rejected` ("skip";
    always for a `too_long` drop)."""
    try:
        return step(raw)
    except RecordError as e:
        message = f"{raw.where}: {e}"
        if on_error == "raise" and e.reason != TOO_LONG:
            raise JalignError(message) from None
        return Rejected(e.reason, message)


def validate(kind: str, raw: RawRecord) -> Example:
    """Parse and validate one raw record of `kind` (RecordError if unusable)."""
    return VALIDATORS[kind](parse_record(raw))


def check_shared_prompt(
    ids: tuple[np.ndarray, ...], masks: tuple[np.ndarray, ...], names: tuple[str, ...]
) -> None:
    """A record's sequences (named `names`) must hold the same tokens before their first
    target: the prompt, which the DPO-family and reward-model forward passes run once per
    record (`jalign.train.forward.shared_prompt_hidden`)."""
    firsts = [int(np.argmax(mask != 0)) for mask in masks]
    for seq, first, name in zip(ids[1:], firsts[1:], names[1:], strict=True):
        if first != firsts[0] or not np.array_equal(ids[0][: firsts[0]], seq[:first]):
            raise RecordError(
                MALFORMED,
                f"{names[0]!r} and {name!r} give different prompt tokens (the {firsts[0]} and "
                f"{first} tokens before their first target differ); expected one prompt, "
                "rendered alike before every response",
            )


class ExampleEncoder:
    """Callable: RawRecord -> Encoded | Rejected, for one kind of data."""

    def __init__(self, kind: str, tokenizer: PreTrainedTokenizerBase, config: DataConfig):
        self.kind = kind
        self.config = config
        self.text = TextEncoder(tokenizer, config)

    def __call__(self, raw: RawRecord) -> Encoded | Rejected:
        return guarded(raw, self._validate_and_encode, self.config.on_error)

    def _validate_and_encode(self, raw: RawRecord) -> Encoded:
        encoded = self._encode(validate(self.kind, raw))
        if self.kind in INDEXED_KINDS:
            encoded.arrays[RECORD_INDEX] = np.int32(raw.index)
        return encoded

    def _sequence(self, prompt: Any, response: Any) -> tuple[Tokens, bool]:
        tokens = self.text.sequence(prompt, response)
        cut = truncate_sequence(tokens, self.config)
        return cut, len(cut.ids) < len(tokens.ids)

    def _loss_mask(self, tokens: Tokens) -> np.ndarray:
        """Targets as float32, never at position 0 (nothing precedes it to predict it from)."""
        if self.kind == SFT and not self.config.completion_only_loss:
            mask = np.ones(len(tokens.ids), dtype=np.float32)
        else:
            mask = tokens.targets.astype(np.float32)
        mask[0] = 0.0
        return mask

    def _encode(self, example: Example) -> Encoded:
        if self.kind == PROMPT:
            ids = self.text.prompt(example.prompt)
            cut = truncate_prompt(ids, self.config)
            arrays = {"prompt_ids": cut, "prompt": example.prompt, **example.extras}
            return Encoded(arrays, truncated=len(cut) < len(ids))
        encoded = [self._sequence(example.prompt, r) for r in example.responses]
        truncated = any(t for _, t in encoded)
        ids = tuple(tokens.ids for tokens, _ in encoded)
        masks = tuple(self._loss_mask(tokens) for tokens, _ in encoded)
        if self.kind == PREFERENCE:
            check_shared_prompt(ids, masks, ("chosen", "rejected"))
            arrays = {
                "chosen_input_ids": ids[0],
                "chosen_loss_mask": masks[0],
                "rejected_input_ids": ids[1],
                "rejected_loss_mask": masks[1],
                "prompt_lengths": np.int32(encoded[0][0].prompt_length),
            }
        elif self.kind == RANKED:
            check_shared_prompt(ids, masks, tuple(f"responses[{j}]" for j in range(len(ids))))
            arrays = {
                "input_ids": ids,
                "loss_mask": masks,
                "scores": np.array(example.scores, np.float32),
            }
        else:
            arrays = {"input_ids": ids[0], "loss_mask": masks[0]}
            if self.kind == UNPAIRED:
                arrays["labels"] = np.bool_(example.label)
        return Encoded(arrays, truncated)

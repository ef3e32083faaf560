"""Record schemas: a raw record dict -> a validated `Example`, or RecordError saying what is wrong.

Text is either plain (a string) or chat form (a list of {"role": str, "content": str}
messages); within one record, the prompt and the responses use the same form (TRL's rule).

    sft         {"prompt", "completion"} or {"messages": [...]} (loss on the assistant turns)
    preference  {"prompt", "chosen", "rejected"}
    unpaired    {"prompt", "completion", "label": bool}                       (KTO)
    ranked      {"prompt", "responses": [k texts], "scores": [k numbers]}   (RRHF)
    prompt      {"prompt", ...}: other fields pass through to the batch (e.g. "answer")

Keys a schema does not name are ignored (except for prompt records, which pass them on).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from jalign.data.stats import EMPTY_COMPLETION, IDENTICAL_PAIR, MALFORMED, RecordError

Message = dict[str, Any]
Text = str | list[Message]

SFT = "sft"
PREFERENCE = "preference"
UNPAIRED = "unpaired"
RANKED = "ranked"
PROMPT = "prompt"
KINDS = (SFT, PREFERENCE, UNPAIRED, RANKED, PROMPT)

# Batch keys of a prompt batch; pass-through fields may not use them.
PROMPT_BATCH_KEYS = ("prompt", "prompt_ids", "prompt_positions", "prompt_segment_ids")
EXAMPLE_MASK = "example_mask"
RECORD_INDEX = "record_index"
TARGET_COLUMNS = "target_columns"
INDEXED_KINDS = (PREFERENCE, UNPAIRED)  # batches that say which source record each row is

_MESSAGES = '[{"role": str, "content": str}, ...]'
FORMATS = {
    SFT: f'{{"prompt": str, "completion": str}} or {{"messages": {_MESSAGES}}}',
    PREFERENCE: '{"prompt": str, "chosen": str, "rejected": str}, or chat form with a message '
    "list prompt and assistant message lists chosen / rejected",
    UNPAIRED: '{"prompt": str, "completion": str, "label": bool}, or chat form with message '
    "lists for prompt and completion",
    RANKED: '{"prompt": str, "responses": [str, ...], "scores": [number, ...]} with one score '
    "per response (at least 2), or chat form with message lists",
    PROMPT: f'{{"prompt": str or {_MESSAGES}, ...other fields passed through}}',
}


@dataclasses.dataclass(frozen=True)
class Example:
    """A validated record. `responses` are encoded after `prompt`: (completion,) for SFT and
    unpaired, (chosen, rejected) for preference, k responses for ranked, () for prompts.
    SFT `messages` records have prompt [] and the whole conversation as their one response."""

    prompt: Text
    responses: tuple[Text, ...]
    label: bool | None = None
    scores: tuple[float, ...] | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


def _fail(kind: str, what: str) -> RecordError:
    return RecordError(MALFORMED, f"{what}; expected {FORMATS[kind]}")


def _field(record: dict[str, Any], key: str, kind: str) -> Any:
    if key not in record:
        raise _fail(kind, f"key '{key}' is missing")
    return record[key]


def _messages(value: Any, key: str, kind: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise _fail(kind, f"'{key}' is {_describe(value)}, not a non-empty message list")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise _fail(kind, f"'{key}[{i}]' is {_describe(message)}, not a message dict")
        for part in ("role", "content"):
            if not isinstance(message.get(part), str):
                raise _fail(kind, f"'{key}[{i}]' has {part} {_describe(message.get(part))}")
    return value


def _text(value: Any, key: str, kind: str, chat: bool) -> Text:
    """A response in the prompt's form: a string, or a message list."""
    if chat:
        return _messages(value, key, kind)
    if not isinstance(value, str):
        raise _fail(kind, f"'{key}' is {_describe(value)}, not a string like the prompt")
    return value


def _prompt(record: dict[str, Any], kind: str) -> Text:
    prompt = _field(record, "prompt", kind)
    if isinstance(prompt, list):
        return _messages(prompt, "prompt", kind)
    if not isinstance(prompt, str):
        raise _fail(kind, f"'prompt' is {_describe(prompt)}, not a string or a message list")
    return prompt


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _require_assistant(messages: list[Message], key: str, kind: str) -> None:
    if not any(m["role"] == "assistant" for m in messages):
        raise _fail(kind, f"'{key}' has no assistant message")


def response_text(text: Text) -> str:
    """The text a response contributes: itself, or its assistant messages' contents."""
    if isinstance(text, str):
        return text
    return "".join(m["content"] for m in text if m["role"] == "assistant")


def _prompt_and_responses(
    record: dict[str, Any], responses: dict[str, Any], kind: str
) -> tuple[Text, list[Text]]:
    """The record's prompt and the named `responses`, all validated in the prompt's form."""
    prompt = _prompt(record, kind)
    chat = isinstance(prompt, list)
    texts = []
    for key, value in responses.items():
        text = _text(value, key, kind, chat)
        if chat:
            _require_assistant(text, key, kind)
        if not response_text(text).strip():
            raise RecordError(EMPTY_COMPLETION, f"'{key}' is empty; expected a non-empty response")
        texts.append(text)
    return prompt, texts


def _named(record: dict[str, Any], keys: tuple[str, ...], kind: str) -> dict[str, Any]:
    return {key: _field(record, key, kind) for key in keys}


def validate_sft(record: dict[str, Any]) -> Example:
    if "messages" in record:
        messages = _messages(record["messages"], "messages", SFT)
        _require_assistant(messages, "messages", SFT)
        if not response_text(messages).strip():
            raise RecordError(
                EMPTY_COMPLETION, "every assistant message is empty; expected some assistant text"
            )
        return Example(prompt=[], responses=(messages,))
    prompt, (completion,) = _prompt_and_responses(record, _named(record, ("completion",), SFT), SFT)
    return Example(prompt=prompt, responses=(completion,))


def validate_preference(record: dict[str, Any]) -> Example:
    pair = _named(record, ("chosen", "rejected"), PREFERENCE)
    prompt, (chosen, rejected) = _prompt_and_responses(record, pair, PREFERENCE)
    if chosen == rejected:
        raise RecordError(
            IDENTICAL_PAIR, "'chosen' equals 'rejected'; expected two different responses"
        )
    return Example(prompt=prompt, responses=(chosen, rejected))


def validate_unpaired(record: dict[str, Any]) -> Example:
    prompt, (completion,) = _prompt_and_responses(
        record, _named(record, ("completion",), UNPAIRED), UNPAIRED
    )
    label = _field(record, "label", UNPAIRED)
    if not isinstance(label, bool | np.bool_):
        raise _fail(UNPAIRED, f"'label' is {_describe(label)}, not a bool")
    return Example(prompt=prompt, responses=(completion,), label=bool(label))


def validate_ranked(record: dict[str, Any]) -> Example:
    responses = _field(record, "responses", RANKED)
    scores = _field(record, "scores", RANKED)
    if not isinstance(responses, list) or len(responses) < 2:
        raise _fail(RANKED, f"'responses' is {_describe(responses)}, not a list of >= 2 responses")
    if not isinstance(scores, list) or len(scores) != len(responses):
        raise _fail(
            RANKED, f"'scores' is {_describe(scores)}, not a list of {len(responses)} numbers"
        )
    for i, score in enumerate(scores):
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise _fail(RANKED, f"'scores[{i}]' is {_describe(score)}, not a finite number")
    numbered = {f"responses[{i}]": response for i, response in enumerate(responses)}
    prompt, texts = _prompt_and_responses(record, numbered, RANKED)
    return Example(prompt=prompt, responses=tuple(texts), scores=tuple(float(s) for s in scores))


def validate_prompt(record: dict[str, Any]) -> Example:
    prompt = _prompt(record, PROMPT)
    if isinstance(prompt, str) and not prompt.strip():
        raise _fail(PROMPT, "'prompt' is empty")
    extras = {k: v for k, v in record.items() if k != "prompt"}
    for key in extras:
        if key in (*PROMPT_BATCH_KEYS, EXAMPLE_MASK):
            raise _fail(PROMPT, f"field '{key}' collides with a batch key of the same name")
    return Example(prompt=prompt, responses=(), extras=extras)


VALIDATORS: dict[str, Callable[[dict[str, Any]], Example]] = {
    SFT: validate_sft,
    PREFERENCE: validate_preference,
    UNPAIRED: validate_unpaired,
    RANKED: validate_ranked,
    PROMPT: validate_prompt,
}

"""`DataConfig`: the options that turn records into batches, validated on construction.

A trainer's config holds them in a `data` section; `DataConfig.from_mapping(cfg.data)` turns
that section (a dict or an ml_collections ConfigDict) into a checked `DataConfig`, and
`DataConfig().to_dict()` gives the defaults to put in a trainer's schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jalign.errors import JalignError

SECTION = "data"  # the config section these options live in (named in error messages)
TRUNCATION_MODES = ("keep_end", "keep_start", "drop")
ON_ERROR_MODES = ("raise", "skip")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Data options.

    max_length: longest token sequence (prompt + response) a row may hold.
    max_prompt_length: longest prompt; longer prompts are cut per `truncation_mode`. None: no
        separate prompt limit (prompt batches then use `max_length`).
    truncation_mode: "keep_end" drops the start of a too-long prompt, "keep_start" its end;
        either way a too-long response is cut at its end. "drop" skips (and counts) every
        example that would need cutting.
    buckets: padded widths a batch may have (ascending; the largest must be >= max_length);
        each batch is padded to the smallest that fits its longest row. None: (max_length,).
    packing: SFT only; greedily pack several examples into each row of max_length.
    completion_only_loss: SFT only; loss on the completion / assistant turns (True) or on
        every token (False).
    add_bos: prepend the tokenizer's BOS to plain-text sequences; None: as the tokenizer
        itself does by default. (Chat-form text gets exactly what the chat template writes.)
    add_eos: append EOS to plain-text responses (a target, so the model learns to stop).
    on_error: "raise" a JalignError for a malformed or unusable record, or "skip" it and
        count it in the iterator's `DataStats`.
    drop_remainder: drop a last batch smaller than the batch size (True), or fill it with
        copies of its last example that have `example_mask` 0 (False).
    shuffle, seed: shuffle the records (reshuffled every epoch) with this seed.
    num_epochs: passes over the data; None: repeat forever.
    """

    max_length: int = 1024
    max_prompt_length: int | None = None
    truncation_mode: str = "keep_end"
    buckets: tuple[int, ...] | None = None
    packing: bool = False
    completion_only_loss: bool = True
    add_bos: bool | None = None
    add_eos: bool = True
    on_error: str = "raise"
    drop_remainder: bool = True
    shuffle: bool = True
    seed: int = 0
    num_epochs: int | None = 1

    def __post_init__(self) -> None:
        if self.buckets is not None:
            _require(isinstance(self.buckets, list | tuple), "buckets", self.buckets, "a list")
            object.__setattr__(self, "buckets", tuple(self.buckets))
        _require_int(self.max_length, "max_length", minimum=2)
        if self.max_prompt_length is not None:
            _require_int(self.max_prompt_length, "max_prompt_length", minimum=1)
            _require(
                self.max_prompt_length < self.max_length,
                "max_prompt_length",
                self.max_prompt_length,
                f"an int < max_length={self.max_length} (room for a response)",
            )
        _require_choice(self.truncation_mode, "truncation_mode", TRUNCATION_MODES)
        _require_choice(self.on_error, "on_error", ON_ERROR_MODES)
        if self.buckets is not None:
            for i, bucket in enumerate(self.buckets):
                _require_int(bucket, f"buckets[{i}]", minimum=1)
            _require(
                len(self.buckets) > 0
                and all(a < b for a, b in zip(self.buckets, self.buckets[1:], strict=False))
                and self.buckets[-1] >= self.max_length,
                "buckets",
                list(self.buckets),
                f"a non-empty strictly increasing list whose largest is >= "
                f"max_length={self.max_length}",
            )
        for name in ("packing", "completion_only_loss", "add_eos", "drop_remainder", "shuffle"):
            _require(isinstance(getattr(self, name), bool), name, getattr(self, name), "a bool")
        if self.add_bos is not None:
            _require(isinstance(self.add_bos, bool), "add_bos", self.add_bos, "a bool or None")
        _require_int(self.seed, "seed", minimum=0)
        if self.num_epochs is not None:
            _require_int(self.num_epochs, "num_epochs", minimum=1)

    @property
    def bucket_widths(self) -> tuple[int, ...]:
        """The widths a batch may be padded to."""
        return self.buckets if self.buckets is not None else (self.max_length,)

    @property
    def prompt_limit(self) -> int:
        """The longest prompt kept (by truncation or dropping) in a prompt batch."""
        return self.max_prompt_length if self.max_prompt_length is not None else self.max_length

    def to_dict(self) -> dict[str, Any]:
        """Plain values (buckets as a list), e.g. the defaults of a trainer's `data` section."""
        values = dataclasses.asdict(self)
        if self.buckets is not None:
            values["buckets"] = list(self.buckets)
        return values

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> DataConfig:
        """Build from a dict / ConfigDict; unknown keys and bad values raise JalignError."""
        allowed = [field.name for field in dataclasses.fields(cls)]
        for key in mapping:
            if key not in allowed:
                raise JalignError(
                    f"unknown config key '{SECTION}.{key}'; allowed keys under '{SECTION}': "
                    f"{', '.join(allowed)}"
                )
        return cls(**dict(mapping))


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise JalignError(f"config key '{SECTION}.{key}' is {value!r}; allowed: {expected}")


def _require_int(value: Any, key: str, minimum: int) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        key,
        value,
        f"an int >= {minimum}",
    )


def _require_choice(value: Any, key: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, key, value, ", ".join(repr(c) for c in choices))

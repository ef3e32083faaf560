"""Unusable records: `RecordError` (why one record cannot be used) and `DataStats` (counts).

With `on_error="skip"` every skipped record is counted under a reason, and the first message
for each reason is kept, so a run can report at its end e.g.

    read 1000 records: 982 used (31 truncated); skipped 18: malformed 2 (first: data.jsonl:7:
    key 'completion' is missing; expected ...), prompt_too_long 16 (first: ...)

The counts travel with the iterator state, so they survive a resumed run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Reasons a record is skipped (stats keys).
MALFORMED = "malformed"  # not the record schema (or not JSON)
EMPTY_COMPLETION = "empty_completion"  # a response with no text
IDENTICAL_PAIR = "identical_pair"  # chosen == rejected
PROMPT_TOO_LONG = "prompt_too_long"  # the prompt alone leaves no room for a response
NO_TARGETS = "no_targets"  # nothing left to predict after truncation
TOO_LONG = "too_long"  # needed truncation under truncation_mode="drop" (never an error)


class RecordError(Exception):
    """A record that cannot be used: `reason` is one of the reasons above, the message why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class DataStats:
    """Counts over the records an iterator has read (each epoch's visit counts again)."""

    records: int = 0
    used: int = 0
    truncated: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    first_message: dict[str, str] = dataclasses.field(default_factory=dict)

    def count_used(self, truncated: bool) -> None:
        self.records += 1
        self.used += 1
        self.truncated += int(truncated)

    def count_skipped(self, reason: str, message: str) -> None:
        self.records += 1
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.first_message.setdefault(reason, message)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible copy (for the iterator state)."""
        return _json_copy(dataclasses.asdict(self))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DataStats:
        return cls(**_json_copy(state))

    def summary(self) -> str:
        """One line for the end-of-run report."""
        text = f"read {self.records} records: {self.used} used ({self.truncated} truncated)"
        if self.skipped:
            reasons = ", ".join(
                f"{reason} {count} (first: {self.first_message[reason]})"
                for reason, count in sorted(self.skipped.items())
            )
            text += f"; skipped {self.num_skipped}: {reasons}"
        return text


def _json_copy(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of plain nested dicts of ints and strings."""
    return {k: _json_copy(v) if isinstance(v, dict) else v for k, v in value.items()}

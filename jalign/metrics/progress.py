"""Terminal progress: a tqdm bar on a terminal, a compact line every N steps elsewhere.

The line form is used when the stream is not a TTY or the `CI` environment variable is set,
so logs captured to a file stay readable (no carriage-return redraws).
"""

from __future__ import annotations

import os
from typing import TextIO

import tqdm


def use_bar(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("CI")


def summary(record: dict) -> str:
    """`loss 2.3456 | 1.23e+04 tok/s | 2.10 steps/s` from whichever of those keys exist."""
    parts = []
    if "loss" in record:
        parts.append(f"loss {record['loss']:.4f}")
    if "tokens_per_sec" in record:
        parts.append(f"{record['tokens_per_sec']:.3g} tok/s")
    if "steps_per_sec" in record:
        parts.append(f"{record['steps_per_sec']:.2f} steps/s")
    return " | ".join(parts)


class Progress:
    """Shows step, loss and throughput of each logged record.

    In line form it prints the first record, then one each time the step passes a multiple
    of `print_every`.
    """

    def __init__(
        self, stream: TextIO, total_steps: int | None, initial_step: int, print_every: int
    ):
        self._stream = stream
        self._total = total_steps
        self._print_every = print_every
        self._last_printed: int | None = None
        self._bar = (
            tqdm.tqdm(total=total_steps, initial=initial_step, file=stream, unit="step")
            if use_bar(stream)
            else None
        )

    def update(self, step: int, record: dict) -> None:
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(summary(record))
        elif self._last_printed is None or (
            step // self._print_every > self._last_printed // self._print_every
        ):
            total = f"/{self._total}" if self._total else ""
            line = " | ".join(filter(None, [f"step {step}{total}", summary(record)]))
            print(line, file=self._stream, flush=True)
            self._last_printed = step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

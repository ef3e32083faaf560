"""Training throughput (steps/s, tokens/s) over a sliding window of recent steps."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable


class Throughput:
    """Call `update(step, tokens)` after each step; `rates()` averages over the last `window`.

    Under JAX's asynchronous dispatch a step "ends" when its results are fetched, so rates are
    exact over any window that ends at a fetch (e.g. at each metrics log).
    """

    def __init__(self, window: int = 20, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._points: collections.deque[tuple[float, int, int]] = collections.deque(
            maxlen=window + 1
        )
        self._total_tokens = 0

    def update(self, step: int, tokens: int) -> None:
        """Record that `step` finished now, having processed `tokens` tokens."""
        self._total_tokens += tokens
        self._points.append((self._clock(), step, self._total_tokens))

    def rates(self) -> dict[str, float]:
        """`{"steps_per_sec", "tokens_per_sec"}`; empty until two steps have been recorded."""
        if len(self._points) < 2:
            return {}
        (t0, step0, tokens0), (t1, step1, tokens1) = self._points[0], self._points[-1]
        elapsed = max(t1 - t0, 1e-9)
        return {
            "steps_per_sec": (step1 - step0) / elapsed,
            "tokens_per_sec": (tokens1 - tokens0) / elapsed,
        }

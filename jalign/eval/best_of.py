"""Best-of-N: of the n samples of each prompt, keep the one the reward scores highest.

Rows follow the sampler's layout: rows [i*n, (i+1)*n) are prompt i's samples. Ties go to the
earliest sample.
"""

from __future__ import annotations

import numpy as np

from jalign.errors import JalignError


def best_of_n(scores: np.ndarray, n: int) -> np.ndarray:
    """The row index of the best sample of each prompt (int [R // n])."""
    scores = np.asarray(scores, np.float64)
    if n < 1 or scores.ndim != 1 or scores.size % n:
        raise JalignError(
            f"best-of-{n}: {scores.shape} scores; allowed: n >= 1 and one score per row, "
            f"n rows per prompt"
        )
    return np.arange(0, scores.size, n) + np.argmax(scores.reshape(-1, n), axis=1)

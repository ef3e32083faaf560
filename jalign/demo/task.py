"""The demo alignment task: sort a short list of digits.

A prompt is ``"sort: 7 3 9 1 4 ="`` (4 to 8 digits 0-9, repeats allowed) and the ideal completion
is the same digits in non-decreasing order, ``"1 3 4 7 9"``. The task is small enough that a
0.8M-parameter model learns it on a CPU in minutes, yet has a graded, computable gold reward, so
every stage of an alignment pipeline has something to show:

- SFT learns from an `ImperfectDemonstrator` whose completions carry realistic mistakes
  (mean gold reward 0.693 with the default probabilities, see `DEMO_MEAN_GOLD`), so the SFT
  policy inherits them and leaves clear room to improve;
- `rank_completions` ranks sampled completions with Plackett-Luce noise around the gold reward
  (Bradley-Terry noise on every pair), for reward modelling and, pair by pair, the DPO family;
- `gold_reward_fn` scores completions for PPO / GRPO and for evaluation.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from jalign.errors import JalignError

PROMPT_PREFIX = "sort:"
# Ends every prompt, so a model reading prompt + answer as one sequence (a reward model) sees
# where the answer starts: without it "sort: 7 1 5" + "7" and "sort: 7 1 5 7" + "" are the
# same tokens.
PROMPT_END = "="
MIN_DIGITS = 4
MAX_DIGITS = 8
DIGITS = tuple(str(d) for d in range(10))

# Weights of the gold reward r = P * (BASE + ORDER * S) + EXACT * E (see `gold_reward`).
BASE_WEIGHT = 0.3
ORDER_WEIGHT = 0.4
EXACT_WEIGHT = 0.3

# Mean gold reward of `ImperfectDemonstrator()` completions: the expected value, measured on 200k
# samples (standard error 0.0005). The 4000 demos of `sft_train.jsonl` with seed 0 average 0.687,
# 28% of them exactly right; uniformly random digit strings of 4-8 digits average 0.18.
DEMO_MEAN_GOLD = 0.693

_PROMPT_PATTERN = re.compile(re.escape(PROMPT_PREFIX) + r"((?:\s+\d(?!\S))+)")


def format_prompt(digits: Sequence[int]) -> str:
    """``[7, 3, 9]`` -> ``"sort: 7 3 9 ="``."""
    return " ".join([PROMPT_PREFIX, *(str(d) for d in digits), PROMPT_END])


def format_completion(digits: Sequence[int]) -> str:
    """``[1, 3, 4]`` -> ``"1 3 4"``."""
    return " ".join(str(d) for d in digits)


def parse_prompt(prompt: str) -> list[int]:
    """The digits of a task prompt. The first ``"sort: d d ..."`` in the text is used, so a prompt
    rendered through the chat template parses too."""
    match = _PROMPT_PATTERN.search(prompt) if isinstance(prompt, str) else None
    if match is None:
        raise JalignError(
            f"demo prompt {prompt!r} has no task; allowed: text containing "
            f"'{PROMPT_PREFIX} d d ...' with space-separated digits 0-9"
        )
    return [int(d) for d in match.group(1).split()]


def ideal_completion(prompt: str) -> str:
    """The gold answer: the prompt's digits in non-decreasing order."""
    return format_completion(sorted(parse_prompt(prompt)))


def sample_prompts(
    count: int,
    rng: np.random.Generator,
    min_digits: int = MIN_DIGITS,
    max_digits: int = MAX_DIGITS,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """`count` distinct prompts, none in `exclude`; lengths uniform in [min_digits, max_digits],
    digits uniform in 0-9 (repeats allowed)."""
    if not 1 <= min_digits <= max_digits:
        raise JalignError(
            f"prompt lengths [{min_digits}, {max_digits}] are invalid; allowed: "
            "1 <= min_digits <= max_digits"
        )
    capacity = sum(10**n for n in range(min_digits, max_digits + 1)) - len(exclude)
    if count > capacity // 2:
        raise JalignError(
            f"{count} distinct prompts asked for, but lengths [{min_digits}, {max_digits}] allow "
            f"only {capacity} unused prompts; allowed: at most half of them ({capacity // 2})"
        )
    seen = set(exclude)
    prompts: list[str] = []
    while len(prompts) < count:
        length = int(rng.integers(min_digits, max_digits + 1))
        prompt = format_prompt(rng.integers(0, 10, size=length).tolist())
        if prompt not in seen:
            seen.add(prompt)
            prompts.append(prompt)
    return prompts


def _completion_digits(completion: object) -> list[int] | None:
    """The digits of a well-formed completion (space-separated single digits), else None."""
    if not isinstance(completion, str):
        return None
    tokens = completion.split()
    if not tokens or any(token not in DIGITS for token in tokens):
        return None
    return [int(token) for token in tokens]


def _score(target: Sequence[int], completion: object) -> float:
    output = _completion_digits(completion)
    if output is None:
        return 0.0
    overlap = sum((Counter(target) & Counter(output)).values())
    permutation = overlap / max(len(target), len(output))
    pairs = len(output) - 1
    in_order = sum(a <= b for a, b in itertools.pairwise(output))
    sortedness = in_order / pairs if pairs else 1.0
    exact = float(output == sorted(target))
    return permutation * (BASE_WEIGHT + ORDER_WEIGHT * sortedness) + EXACT_WEIGHT * exact


def gold_reward(prompt: str, completion: str) -> float:
    """Gold reward in [0, 1] of `completion` for a task `prompt`.

    With x the prompt's n digits and y the completion's m digits:

        P = sum_d min(count_x(d), count_y(d)) / max(n, m)   multiset overlap with a length penalty
        S = #{i : y_i <= y_{i+1}} / (m - 1)                 fraction of adjacent pairs in order
                                                            (S = 1 when m = 1)
        E = 1 if y == sorted(x) else 0                      exact-match bonus
        r = P * (0.3 + 0.4 * S) + 0.3 * E

    so the exact sort scores 1, and e.g. for ``"sort: 7 3 9 1 4"``: one neighbour swap
    ``"3 1 4 7 9"`` -> 0.6, a dropped digit ``"1 3 4 7"`` -> 0.56, a duplicated digit
    ``"1 3 4 4 7 9"`` -> 0.5833, echoing the prompt ``"7 3 9 1 4"`` -> 0.5, the reverse sort
    -> 0.3. Weighting S by P keeps "sorted junk" (``"0 0 0 0"``) low. A completion is
    well-formed when it is one or more whitespace-separated single digits; anything else (empty
    text, other words, special tokens, ``"13"``, non-strings) scores 0. Completions should be
    decoded up to the first EOS with special tokens skipped.

    Raises `JalignError` only when the *prompt* holds no task.
    """
    return _score(parse_prompt(prompt), completion)


def gold_reward_fn(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """`gold_reward` of each (prompt, completion) pair as float32 [N], for RL and evaluation.

    Never raises on completion text (malformed -> 0); raises `JalignError` when the lists
    differ in length or a prompt holds no task.
    """
    if len(prompts) != len(completions):
        raise JalignError(
            f"gold_reward_fn got {len(prompts)} prompts and {len(completions)} completions; "
            "allowed: one completion per prompt"
        )
    return np.asarray(
        [gold_reward(p, c) for p, c in zip(prompts, completions, strict=True)], np.float32
    )


@dataclasses.dataclass(frozen=True)
class ImperfectDemonstrator:
    """Writes SFT demonstrations with realistic mistakes.

    Starting from the ideal sort it applies, each independently with its probability and in this
    order: leave a window of 3 to n digits shuffled (`p_unsorted_run`), swap one pair of
    unequal neighbours (`p_swap`), drop one digit (`p_drop`), duplicate one digit in place
    (`p_duplicate`). The defaults give a mean gold reward of `DEMO_MEAN_GOLD` = 0.693 with 28%
    of demos exactly right, so the SFT policy has clear room to improve. The mistakes are spread
    over positions, so at each step the right digit stays the most likely one: a policy that fits
    the demos decodes far better greedily than when sampled at temperature 1 (a probe SFT of the
    demo model, 800 steps of 64 demos: gold 0.70 sampled, 0.94 greedy), and alignment shows as
    the sampled gold reward rising toward the greedy one.
    """

    p_unsorted_run: float = 0.3
    p_swap: float = 0.4
    p_drop: float = 0.2
    p_duplicate: float = 0.2

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not 0.0 <= value <= 1.0:
                raise JalignError(
                    f"ImperfectDemonstrator.{field.name}={value} is not a probability; "
                    "allowed: 0 <= value <= 1"
                )

    def complete(self, prompt: str, rng: np.random.Generator) -> str:
        """One imperfect completion of `prompt`, drawn with `rng`."""
        digits = sorted(parse_prompt(prompt))
        if rng.random() < self.p_unsorted_run and len(digits) >= 3:
            width = int(rng.integers(3, len(digits) + 1))
            start = int(rng.integers(0, len(digits) - width + 1))
            digits[start : start + width] = rng.permutation(digits[start : start + width]).tolist()
        if rng.random() < self.p_swap:
            unequal = [i for i in range(len(digits) - 1) if digits[i] != digits[i + 1]]
            if unequal:
                i = unequal[int(rng.integers(len(unequal)))]
                digits[i], digits[i + 1] = digits[i + 1], digits[i]
        if rng.random() < self.p_drop and len(digits) > 1:
            del digits[int(rng.integers(len(digits)))]
        if rng.random() < self.p_duplicate:
            i = int(rng.integers(len(digits)))
            digits.insert(i, digits[i])
        return format_completion(digits)


def rank_completions(
    prompt: str, completions: Sequence[str], rng: np.random.Generator, beta: float = 10.0
) -> dict:
    """A ranked record ``{"prompt", "responses", "scores"}``: the completions ranked by a
    Plackett-Luce labeller (Plackett 1975; Luce 1959) around the gold reward g, by sorting

        u = beta * g + Gumbel(0, 1) noise

    (the Gumbel-max trick), so any two completions with different gold rewards are ordered as
    a Bradley-Terry labeller (Bradley & Terry 1952; the preference model of RLHF, Christiano
    et al. 2017, and DPO, Rafailov et al. 2023) would order them on their own:
    P(a above b) = sigmoid(beta * (g(a) - g(b))); `beta` -> inf gives the gold order, `beta` = 0
    a uniformly random one. Completions of equal gold reward share one noise draw and one score
    (a tie: no preference), as do copies of one completion. ``scores`` are ranks, 0 for the
    lowest.
    """
    if not beta >= 0.0:
        raise JalignError(f"rank_completions beta={beta} is invalid; allowed: beta >= 0")
    gold = np.asarray([gold_reward(prompt, c) for c in completions])
    values, tied = np.unique(gold, return_inverse=True)
    utility = beta * values + rng.gumbel(size=len(values))
    ranks = np.argsort(np.argsort(utility))
    return {"prompt": prompt, "responses": list(completions), "scores": ranks[tied].tolist()}

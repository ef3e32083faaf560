"""Pairwise AI feedback (RLAIF): a judge decides which of two responses is better.

The judge sees a prompt written from `JUDGE_TEMPLATE` (the request, response A, response B, the
criteria) and its verdict is read from its next-token distribution, not from sampled text:

    p_AB = P(first response better) = pi("A") / (pi("A") + pi("B"))

at the position after the judge prompt (Bai et al. 2022, "Constitutional AI", sec. 4.1, and Lee
et al. 2023, "RLAIF", who likewise normalise the judge's probabilities of the two labels).
Judges prefer whichever response comes first (or second) more often than quality warrants
(position bias; Zheng et al. 2023, "Judging LLM-as-a-judge"), so every pair is judged twice, in
both orders, and the two verdicts are averaged:

    P(a better than b) = (p(a, b) + 1 - p(b, a)) / 2

A constant bias toward one position cancels exactly in this average. A pair whose two verdicts
disagree (a wins in one order and loses in the other) is *inconsistent*: the judge's preference
there is no stronger than its position bias.

A judge is any callable `judge_texts -> P(first better)` (a `ProbFirst`); `ModelJudge` is one
backed by a jalign model, and tests use a scripted function in its place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jalign.data import encode_prompt, pad_token_id
from jalign.errors import JalignError
from jalign.models import apply
from jalign.sampling import make_prompt_batch

ProbFirst = Callable[[list[str]], np.ndarray]

JUDGE_TEMPLATE = (
    "Compare two responses to the same request.\n"
    "Criteria: {criteria}\n\n"
    "Request:\n{prompt}\n\n"
    "Response A:\n{first}\n\n"
    "Response B:\n{second}\n\n"
    "Which response better meets the criteria? Answer with one letter, A or B."
)
DEFAULT_CRITERIA = "helpful, correct and harmless; concise when that is enough"


def judge_text(prompt: str, first: str, second: str, criteria: str = DEFAULT_CRITERIA) -> str:
    """The judge prompt for one ordered pair."""
    return JUDGE_TEMPLATE.format(criteria=criteria, prompt=prompt, first=first, second=second)


@dataclasses.dataclass(frozen=True)
class Judgments:
    """Per pair (a_i, b_i): P(a better) with positions swapped and averaged, the two one-order
    verdicts, and whether they agree."""

    prob_a: np.ndarray  # [N] (p_ab + 1 - p_ba) / 2
    prob_a_first: np.ndarray  # [N] p(a, b): a shown as response A
    prob_a_second: np.ndarray  # [N] 1 - p(b, a): a shown as response B
    consistent: np.ndarray  # [N] bool: both orders pick the same response

    @property
    def position_bias(self) -> float:
        """Mean excess probability given to whichever response is shown first (0 = unbiased)."""
        return float(np.mean(self.prob_a_first - self.prob_a_second) / 2)


def judge_pairs(
    judge: ProbFirst,
    prompts: Sequence[str],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    criteria: str = DEFAULT_CRITERIA,
) -> Judgments:
    """Judge each (prompt, a, b) in both orders; see the module docstring."""
    if not (len(prompts) == len(responses_a) == len(responses_b)):
        raise JalignError(
            f"judge_pairs: {len(prompts)} prompts, {len(responses_a)} responses a and "
            f"{len(responses_b)} responses b; allowed: equal lengths"
        )
    if not prompts:
        raise JalignError("judge_pairs: no pairs given; allowed: at least one pair")
    triples = list(zip(prompts, responses_a, responses_b, strict=True))
    ab = [judge_text(p, a, b, criteria) for p, a, b in triples]
    ba = [judge_text(p, b, a, criteria) for p, a, b in triples]
    probs = np.asarray(judge(ab + ba), dtype=np.float64)
    if probs.shape != (2 * len(prompts),) or not np.all((probs >= 0) & (probs <= 1)):
        raise JalignError(
            f"the judge returned {probs.shape} values (range {probs.min():.3g}..{probs.max():.3g}); "
            f"allowed: {2 * len(prompts)} probabilities in [0, 1]"
        )
    first, second = probs[: len(prompts)], 1.0 - probs[len(prompts) :]
    return Judgments(
        prob_a=(first + second) / 2,
        prob_a_first=first,
        prob_a_second=second,
        consistent=(first > 0.5) == (second > 0.5),
    )


def preference_records(
    prompts: Sequence[str],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    judgments: Judgments,
    drop_inconsistent: bool = True,
) -> list[dict[str, Any]]:
    """`{"prompt", "chosen", "rejected", "judge_prob"}` records for the trainers; pairs the judge
    could not separate from its position bias are dropped unless `drop_inconsistent=False`."""
    records = []
    for i, prompt in enumerate(prompts):
        if drop_inconsistent and not judgments.consistent[i]:
            continue
        prob = float(judgments.prob_a[i])
        a_wins = prob >= 0.5
        records.append(
            {
                "prompt": prompt,
                "chosen": responses_a[i] if a_wins else responses_b[i],
                "rejected": responses_b[i] if a_wins else responses_a[i],
                "judge_prob": prob if a_wins else 1.0 - prob,
            }
        )
    return records


class ModelJudge:
    """A `ProbFirst` backed by a causal LM: each judge prompt is rendered as a user turn of the
    tokenizer's chat template (plain text when it has none), run through one forward pass, and
    the next-token probabilities of the two choice labels are normalised against each other."""

    def __init__(
        self,
        graphdef: nnx.GraphDef,
        params: Any,
        tokenizer: Any,
        batch_size: int = 8,
        choices: tuple[str, str] = ("A", "B"),
        buckets: Sequence[int] | None = None,
    ):
        self.graphdef, self.params, self.tokenizer = graphdef, params, tokenizer
        self.batch_size, self.buckets = batch_size, buckets
        self.choice_ids = jnp.asarray([_single_token(tokenizer, c) for c in choices])
        self._logits = jax.jit(self._last_logits)

    def _last_logits(self, params: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
        positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
        logits, _ = apply(self.graphdef, params, ids, positions, mask, read_columns=slice(-1, None))
        return jax.nn.log_softmax(logits[:, 0].astype(jnp.float32))[:, self.choice_ids]

    def _encode(self, text: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            return encode_prompt(self.tokenizer, [{"role": "user", "content": text}])
        return encode_prompt(self.tokenizer, text)

    def __call__(self, texts: list[str]) -> np.ndarray:
        pad = pad_token_id(self.tokenizer)
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            ids = [self._encode(t) for t in chunk]
            ids += [ids[-1]] * (self.batch_size - len(ids))  # one shape per bucket
            batch = make_prompt_batch(ids, self.buckets, pad)
            logps = np.asarray(self._logits(self.params, batch.input_ids, batch.mask))
            logps = logps[: len(chunk)]
            out.append(np.exp(logps[:, 0] - np.logaddexp(logps[:, 0], logps[:, 1])))
        return np.concatenate(out)


def _single_token(tokenizer: Any, label: str) -> int:
    ids = tokenizer(label, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise JalignError(
            f"judge choice label {label!r} is {len(ids)} tokens for this tokenizer; allowed: "
            "labels that are one token each (e.g. 'A'/'B' or '1'/'2')"
        )
    return int(ids[0])

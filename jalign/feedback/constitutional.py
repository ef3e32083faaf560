"""Constitutional critique-and-revise data (Bai et al. 2022, "Constitutional AI: Harmlessness from
AI Feedback", sec. 3): for each prompt, a model

1. answers it (the initial response),
2. critiques its answer against one principle drawn from the constitution,
3. revises the answer in the light of its critique,

all in one growing conversation. The revisions are SFT targets (`{"prompt", "completion"}`) and
(revision, initial response) are preference pairs (`{"prompt", "chosen", "rejected"}`); both
files feed jalign's trainers directly.

The model is reached through a `Completer` (conversations -> assistant replies), so any model
jalign loads works (`sampler_completer`), and tests use a scripted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from flax import nnx

from jalign.data import encode_prompt
from jalign.data.schemas import Message
from jalign.errors import JalignError
from jalign.eval.rollouts import concat_rollouts, sample_rollouts
from jalign.sampling import SamplingParams

Completer = Callable[[list[list[Message]]], list[str]]

CRITIQUE_REQUEST = (
    "Critique your last response against this principle: {principle} "
    "Name the specific ways it falls short, briefly."
)
REVISION_REQUEST = (
    "Rewrite your response to my original request so that it follows the principle: "
    "{principle} Reply with the rewritten response only."
)
DEFAULT_PRINCIPLES = (
    "The response should be factually correct and say so when it is unsure.",
    "The response should be helpful and answer exactly what was asked.",
    "The response should avoid harmful, unethical or dangerous content.",
    "The response should be concise and free of repetition.",
)


@dataclasses.dataclass(frozen=True)
class Revision:
    """One prompt's trip through the loop."""

    prompt: str
    principle: str
    response: str
    critique: str
    revision: str

    @property
    def improved(self) -> bool:
        """A usable revision: non-empty and different from the response it revises."""
        return bool(self.revision.strip()) and self.revision.strip() != self.response.strip()


def critique_and_revise(
    complete: Completer,
    prompts: Sequence[str],
    principles: Sequence[str] = DEFAULT_PRINCIPLES,
    seed: int = 0,
) -> list[Revision]:
    """Run the three turns for every prompt, batched turn by turn (one `complete` call each);
    each prompt draws its principle uniformly at random (seeded)."""
    if not principles:
        raise JalignError("critique_and_revise: no principles given; allowed: at least one")
    if not prompts:
        raise JalignError("critique_and_revise: no prompts given; allowed: at least one")
    rng = np.random.default_rng(seed)
    chosen = [principles[i] for i in rng.integers(len(principles), size=len(prompts))]
    conversations: list[list[Message]] = [[{"role": "user", "content": p}] for p in prompts]
    replies = []
    for request in (None, CRITIQUE_REQUEST, REVISION_REQUEST):
        if request is not None:
            conversations = [
                [*c, {"role": "user", "content": request.format(principle=principle)}]
                for c, principle in zip(conversations, chosen, strict=True)
            ]
        turn = complete(conversations)
        if len(turn) != len(conversations):
            raise JalignError(
                f"the completer returned {len(turn)} replies for {len(conversations)} "
                "conversations; allowed: one reply per conversation"
            )
        replies.append(turn)
        conversations = [
            [*c, {"role": "assistant", "content": reply}]
            for c, reply in zip(conversations, turn, strict=True)
        ]
    return [
        Revision(prompt, principle, response, critique, revision)
        for prompt, principle, response, critique, revision in zip(
            prompts, chosen, *replies, strict=True
        )
    ]


def revision_records(revisions: Sequence[Revision]) -> dict[str, list[dict[str, Any]]]:
    """`{"sft": [...], "preference": [...]}` records from the usable revisions."""
    usable = [r for r in revisions if r.improved]
    return {
        "sft": [{"prompt": r.prompt, "completion": r.revision} for r in usable],
        "preference": [
            {"prompt": r.prompt, "chosen": r.revision, "rejected": r.response} for r in usable
        ],
    }


def sampler_completer(
    graphdef: nnx.GraphDef,
    params: Any,
    tokenizer: Any,
    sampling: SamplingParams,
    batch_size: int = 8,
) -> Completer:
    """A `Completer` that renders each conversation with the tokenizer's chat template and
    samples the assistant's reply with jalign's sampler."""

    def complete(conversations: list[list[Message]]) -> list[str]:
        parts = sample_rollouts(
            graphdef,
            params,
            tokenizer,
            conversations,
            sampling,
            batch_size,
            encode=lambda c: encode_prompt(tokenizer, c),
        )
        return concat_rollouts(parts).completions

    return complete

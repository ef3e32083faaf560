"""A verifiable task for a real chat model: two-number arithmetic with an exact-answer reward.

    python -m jalign.tasks.arithmetic --out runs/smollm2_arith/data

writes `prompts_train.jsonl` / `prompts_eval.jsonl` (chat-form prompt records) and `sft_train.jsonl`
(the correct answers, for an SFT warm-up). The reward (`reward_fn`) reads the last number of a
completion (small chat models tend to restate the question, "24 * 4 = 96", before answering):

    r = 1.0     the last number is the right answer
        0.1     a number, but the wrong one (the format is right)
        0.0     no number at all

so RL with this verifier (GRPO, PPO with a function reward) climbs from "answers in the right
format" to "answers correctly", and its learning curve is the accuracy.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jalign.errors import JalignError

OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
QUESTION = "What is {a} {op} {b}? Reply with the number only."
_QUESTION = re.compile(r"What is (-?\d+) ([+\-*]) (-?\d+)\?")
_NUMBER = re.compile(r"-?\d+")
CORRECT, WRONG_NUMBER, NO_NUMBER = 1.0, 0.1, 0.0


def make_question(a: int, op: str, b: int) -> str:
    return QUESTION.format(a=a, op=op, b=b)


def answer(question: str) -> int:
    """The exact answer of a question written by `make_question` (plain or chat-rendered)."""
    match = _QUESTION.search(question) if isinstance(question, str) else None
    if match is None:
        raise JalignError(
            f"not an arithmetic question: {question!r}; expected text containing "
            f"{QUESTION.format(a='A', op='+', b='B')!r}"
        )
    a, op, b = match.groups()
    return OPERATIONS[op](int(a), int(b))


def reward_fn(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """The verifier: see the module docstring. Prompts may be text or chat-message lists."""
    scores = np.zeros(len(completions), np.float32)
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        numbers = _NUMBER.findall(completion)
        if numbers:
            scores[i] = CORRECT if int(numbers[-1]) == answer(text) else WRONG_NUMBER
    return scores


def questions(count: int, seed: int, max_operand: int = 50) -> list[str]:
    """`count` random questions (seeded), operands in [2, max_operand), + - and *."""
    rng = np.random.default_rng(seed)
    ops = list(OPERATIONS)
    out = []
    for _ in range(count):
        a, b = (int(x) for x in rng.integers(2, max_operand, size=2))
        op = ops[int(rng.integers(len(ops)))]
        out.append(make_question(a, op, b if op != "*" else b % 12 + 2))
    return out


def write_task(
    out: Path, train: int = 2000, eval_count: int = 200, seed: int = 0
) -> dict[str, Path]:
    """Prompt files (chat form) for RL and an SFT file of correct answers."""
    out.mkdir(parents=True, exist_ok=True)
    train_q = questions(train, seed)
    eval_q = questions(eval_count, seed + 1)
    files = {
        "prompts_train.jsonl": [{"prompt": [{"role": "user", "content": q}]} for q in train_q],
        "prompts_eval.jsonl": [{"prompt": [{"role": "user", "content": q}]} for q in eval_q],
        "sft_train.jsonl": [
            {
                "messages": [
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": str(answer(q))},
                ]
            }
            for q in train_q
        ],
    }
    paths = {}
    for name, records in files.items():
        paths[name] = out / name
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/smollm2_arith/data"))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, path in write_task(args.out, args.train, args.eval, args.seed).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()

"""How good is a model as a pairwise judge? Label arithmetic answer pairs (one right, one wrong,
in random order) with `jalign.feedback.ModelJudge` and compare with the truth.

    python tools/judge_eval.py [--model smollm2] [--pairs 64]

Prints the accuracy of one-order verdicts and of position-swapped verdicts, the share of pairs
whose two orders agree (and the accuracy on those), and the judge's position bias.
"""

from __future__ import annotations

import argparse

import numpy as np

from jalign.data import load_tokenizer
from jalign.feedback import ModelJudge, judge_pairs
from jalign.interop import load_model_source


def arithmetic_pairs(count: int, seed: int) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """Prompts, responses a and b, and whether a is the right one."""
    rng = np.random.default_rng(seed)
    prompts, right, wrong = [], [], []
    for _ in range(count):
        x, y = rng.integers(2, 50, size=2)
        error = int(rng.choice([-10, -2, -1, 1, 2, 10]))
        prompts.append(f"What is {x} + {y}?")
        right.append(f"{x} + {y} = {x + y}.")
        wrong.append(f"{x} + {y} = {x + y + error}.")
    a_right = rng.random(count) < 0.5
    a = [r if flag else w for r, w, flag in zip(right, wrong, a_right, strict=True)]
    b = [w if flag else r for r, w, flag in zip(right, wrong, a_right, strict=True)]
    return prompts, a, b, a_right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="HF folder, .gguf, or 'smollm2'")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder, _, graphdef, params = load_model_source(args.model)
    judge = ModelJudge(graphdef, params, load_tokenizer(folder), batch_size=16, buckets=(128,))
    prompts, a, b, a_right = arithmetic_pairs(args.pairs, args.seed)
    judgments = judge_pairs(judge, prompts, a, b, criteria="the arithmetic is correct")
    consistent = judgments.consistent
    swapped_right = (judgments.prob_a > 0.5) == a_right
    print(f"model: {folder}")
    print(f"pairs: {args.pairs} (one right and one wrong sum each, order random)")
    print(
        f"one-order accuracy (a shown first): {np.mean((judgments.prob_a_first > 0.5) == a_right):.3f}"
    )
    print(f"position-swapped accuracy:          {np.mean(swapped_right):.3f}")
    print(f"consistent pairs (both orders agree): {np.mean(consistent):.3f}")
    if consistent.any():
        print(f"accuracy on consistent pairs:       {np.mean(swapped_right[consistent]):.3f}")
    print(f"position bias (P toward the first response): {judgments.position_bias:+.3f}")


if __name__ == "__main__":
    main()

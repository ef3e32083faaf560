"""The arithmetic verifier: exact answers, partial credit for a wrong number, nothing without one;
prompts in plain, chat-rendered and message-list form."""

import json

import numpy as np
import pytest

from jalign.errors import JalignError
from jalign.tasks.arithmetic import answer, make_question, questions, reward_fn, write_task


def test_reward_values():
    q = make_question(17, "+", 25)
    chat = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    messages = [{"role": "user", "content": make_question(9, "*", 7)}]
    scores = reward_fn(
        [q, q, q, chat, messages, make_question(3, "-", 8)],
        ["42", "17 + 25 = 42.", "41", "43 or 42", "63", "-5"],
    )
    np.testing.assert_array_equal(scores, np.float32([1.0, 1.0, 0.1, 1.0, 1.0, 1.0]))
    assert reward_fn([q], ["forty-two"])[0] == 0.0


def test_answers_and_bad_question():
    assert [
        answer(make_question(a, op, b)) for a, op, b in [(2, "+", 3), (2, "-", 9), (4, "*", 5)]
    ] == [5, -7, 20]
    with pytest.raises(JalignError, match="not an arithmetic question"):
        answer("sort: 3 1 2")


def test_written_files_are_consistent(tmp_path):
    files = write_task(tmp_path, train=20, eval_count=5, seed=3)
    sft = [json.loads(line) for line in files["sft_train.jsonl"].read_text().splitlines()]
    prompts = [json.loads(line) for line in files["prompts_train.jsonl"].read_text().splitlines()]
    assert len(sft) == len(prompts) == 20
    assert [r["prompt"][0]["content"] for r in prompts] == questions(20, 3)
    for record in sft:
        user, assistant = record["messages"]
        assert reward_fn([user["content"]], [assistant["content"]])[0] == 1.0

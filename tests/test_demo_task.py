"""The demo task: hand-computed gold rewards, the demonstrator's documented quality, Plackett-Luce
label noise, the committed tokenizer and model config, and the generated datasets."""

import json
import math

import numpy as np
import pytest

from jalign.demo import (
    DEMO_MEAN_GOLD,
    DatasetSizes,
    ImperfectDemonstrator,
    as_chat,
    demo_datasets,
    gold_reward,
    gold_reward_fn,
    ideal_completion,
    parse_prompt,
    paths,
    rank_completions,
    sample_prompts,
    write_assets,
    write_datasets,
)
from jalign.demo.preferences import ranking_pairs
from jalign.errors import JalignError

PROMPT = "sort: 7 3 9 1 4"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("1 3 4 7 9", 1.0),
        (" 1  3 4\n7 9 ", 1.0),  # any whitespace separates digits
        ("3 1 4 7 9", 0.3 + 0.4 * 3 / 4),  # neighbour swap: P = 1, S = 3/4
        ("1 3 4 7", 4 / 5 * 0.7),  # dropped digit: P = 4/5, S = 1
        ("1 3 4 4 7 9", 5 / 6 * 0.7),  # duplicated digit: P = 5/6, S = 1
        ("1 3 4 7 8", 4 / 5 * 0.7),  # substituted digit: P = 4/5
        ("7 3 9 1 4", 0.3 + 0.4 * 2 / 4),  # echo: 2 of 4 adjacent pairs in order
        ("9 7 4 3 1", 0.3),  # reverse sort: S = 0
        ("1", 1 / 5 * 0.7),  # single digit: S = 1 by convention
        ("0 0 0 0", 0.0),  # sorted but no overlap
        ("", 0.0),
        ("   ", 0.0),
        ("hello", 0.0),
        ("13 4 7 9", 0.0),
        ("1,3,4,7,9", 0.0),
        ("1 3 4 7 9 <eos>", 0.0),
        ("1 3 4 7 9 -1", 0.0),
        (None, 0.0),
        (12, 0.0),
    ],
)
def test_gold_reward_hand_computed(completion, expected):
    assert gold_reward(PROMPT, completion) == pytest.approx(expected, abs=1e-12)


def test_gold_reward_repeats_and_chat_rendered_prompt():
    assert gold_reward("sort: 2 2 0 2", "0 2 2 2") == 1.0
    # Missing one of the repeated 2s: overlap 3 of 4; the duplicate-free answer is not exact.
    assert gold_reward("sort: 2 2 0 2", "0 2 2") == pytest.approx(3 / 4 * 0.7)
    chat_prompt = "<bos><|user|> sort: 7 3 9 1 4 <|assistant|> "
    assert parse_prompt(chat_prompt) == [7, 3, 9, 1, 4]
    assert gold_reward(chat_prompt, "3 1 4 7 9") == gold_reward(PROMPT, "3 1 4 7 9")
    assert ideal_completion(PROMPT) == "1 3 4 7 9"


def test_gold_reward_rejects_prompt_without_task():
    with pytest.raises(JalignError, match="has no task"):
        gold_reward("please sort 7 3 9", "3 7 9")


def test_gold_reward_fn_batches_and_survives_garbage():
    prompts = [PROMPT, PROMPT, "sort: 5 0", PROMPT]
    completions = ["1 3 4 7 9", "\x00\ufffd{}", "0 5", None]
    rewards = gold_reward_fn(prompts, completions)
    assert rewards.dtype == np.float32 and rewards.shape == (4,)
    np.testing.assert_array_equal(rewards, [1.0, 0.0, 1.0, 0.0])
    with pytest.raises(JalignError, match="one completion per prompt"):
        gold_reward_fn([PROMPT], [])


def test_sample_prompts_distinct_deterministic_and_in_range():
    prompts = sample_prompts(500, np.random.default_rng(3))
    assert prompts == sample_prompts(500, np.random.default_rng(3))
    assert len(set(prompts)) == 500
    lengths = {len(parse_prompt(p)) for p in prompts}
    assert lengths == set(range(4, 9))
    more = sample_prompts(100, np.random.default_rng(3), exclude=set(prompts))
    assert not set(more) & set(prompts)
    with pytest.raises(JalignError, match="distinct prompts"):
        sample_prompts(60, np.random.default_rng(0), min_digits=2, max_digits=2)


def test_demonstrator_matches_documented_quality():
    prompts = sample_prompts(3000, np.random.default_rng(11))
    rng = np.random.default_rng(12)
    demos = [ImperfectDemonstrator().complete(p, rng) for p in prompts]
    rewards = gold_reward_fn(prompts, demos)
    assert 0.6 <= DEMO_MEAN_GOLD <= 0.75
    assert rewards.mean() == pytest.approx(DEMO_MEAN_GOLD, abs=0.015)  # ~4 standard errors
    assert 0.2 < (rewards == 1.0).mean() < 0.4
    assert rewards.min() > 0.0  # every demo is well-formed
    perfect = ImperfectDemonstrator(0.0, 0.0, 0.0, 0.0)
    assert all(perfect.complete(p, rng) == ideal_completion(p) for p in prompts[:50])
    with pytest.raises(JalignError, match=r"p_drop=1\.5 is not a probability"):
        ImperfectDemonstrator(p_drop=1.5)


def test_rank_completions_plackett_luce_noise():
    prompts = sample_prompts(2000, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    demonstrator = ImperfectDemonstrator()
    a = [demonstrator.complete(p, rng) for p in prompts]
    b = [demonstrator.complete(p, rng) for p in prompts]
    gold_a, gold_b = gold_reward_fn(prompts, a), gold_reward_fn(prompts, b)
    informative = int(
        sum(x != y and ga != gb for x, y, ga, gb in zip(a, b, gold_a, gold_b, strict=True))
    )

    def rank(prompts, *completions, beta, seed=0):
        rng = np.random.default_rng(seed)
        return [
            rank_completions(p, list(c), rng, beta)
            for p, *c in zip(prompts, *completions, strict=True)
        ]

    sharp = ranking_pairs(rank(prompts, a, b, beta=1e4))
    assert len(sharp) == informative > 800  # ties and identical completions make no pair
    chosen = gold_reward_fn([r["prompt"] for r in sharp], [r["chosen"] for r in sharp])
    rejected = gold_reward_fn([r["prompt"] for r in sharp], [r["rejected"] for r in sharp])
    assert (chosen > rejected).all()
    assert set(sharp[0]) == {"prompt", "chosen", "rejected"}

    coin = ranking_pairs(rank(prompts, a, b, beta=0.0))
    a_of = dict(zip(prompts, a, strict=True))
    assert abs(np.mean([r["chosen"] == a_of[r["prompt"]] for r in coin]) - 0.5) < 0.05

    # Gold 1.0, 0.6 (a neighbour swap) and 0.3 (the reverse sort), with a copy of the first:
    # every pair is ordered with its Bradley-Terry probability sigmoid(2.5 (g_a - g_b)).
    n = 4000
    completions = ["1 3 4 7 9", "3 1 4 7 9", "9 7 4 3 1", "1 3 4 7 9"]
    records = rank([PROMPT] * n, *([c] * n for c in completions), beta=2.5, seed=1)
    scores = np.asarray([r["scores"] for r in records])
    assert (scores[:, 0] == scores[:, 3]).all()  # copies tie
    for (i, j), gap in {(0, 1): 0.4, (0, 2): 0.7, (1, 2): 0.3}.items():
        rate = np.mean(scores[:, i] > scores[:, j])
        assert rate == pytest.approx(1 / (1 + math.exp(-2.5 * gap)), abs=0.025)
    assert len(ranking_pairs(records[:1])) == 5  # 6 pairs less the copies' tie
    with pytest.raises(JalignError, match=r"beta=-1\.0 is invalid"):
        rank_completions(PROMPT, completions, np.random.default_rng(0), beta=-1.0)


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(paths()), local_files_only=True)


def test_tokenizer_round_trips_prompts_and_completions(hf_tokenizer):
    tok = hf_tokenizer
    assert len(tok) == 24
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    prompt_ids = tok(PROMPT)["input_ids"]
    assert prompt_ids[0] == tok.bos_token_id and len(prompt_ids) == 7
    assert tok.decode(prompt_ids, skip_special_tokens=True) == PROMPT
    for record in demo_datasets(sizes=DatasetSizes(100, 0, 0, 0))["sft_train.jsonl"]:
        for text in record.values():
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.unk_token_id not in ids
            assert tok.decode(ids) == text
    # Every id decodes to a visible word; reserved words make a completion malformed.
    words = tok.decode([14, 20, 15], skip_special_tokens=True)
    assert words == "7 <reserved_2> 8" and gold_reward(PROMPT, words) == 0.0


def test_chat_template_renders_and_prefixes(hf_tokenizer):
    tok = hf_tokenizer
    record = as_chat({"prompt": PROMPT, "completion": "1 3 4 7 9"})
    prompt_text = tok.apply_chat_template(
        record["prompt"], tokenize=False, add_generation_prompt=True
    )
    full_text = tok.apply_chat_template(record["prompt"] + record["completion"], tokenize=False)
    assert prompt_text == "<bos><|user|> sort: 7 3 9 1 4 <|assistant|> "
    assert full_text == prompt_text + "1 3 4 7 9 <eos> "
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids = tok(full_text, add_special_tokens=False)["input_ids"]
    assert full_ids == prompt_ids + tok("1 3 4 7 9", add_special_tokens=False)["input_ids"] + [2]
    assert parse_prompt(prompt_text) == [7, 3, 9, 1, 4]
    with pytest.raises(Exception, match="only user and assistant roles"):
        tok.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)


def test_committed_assets_regenerate_byte_for_byte(tmp_path):
    for written in write_assets(tmp_path):
        assert written.read_bytes() == (paths() / written.name).read_bytes(), written.name
    assert "rope_parameters" in json.loads((paths() / "config.json").read_text())


def test_config_builds_transformers_llama_and_jalign_config(hf_tokenizer):
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from jalign.models import load_hf_config

    config = AutoConfig.from_pretrained(str(paths()), local_files_only=True)
    model = LlamaForCausalLM(config).eval()
    assert model.get_output_embeddings().weight.shape == (len(hf_tokenizer), 128)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    ids = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], 24)

    cfg = load_hf_config(paths())
    assert (cfg.vocab_size, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim) == (24, 4, 2, 32)
    assert cfg.tie_word_embeddings and cfg.eos_token_ids == (2,) and cfg.pad_token_id == 0


def test_datasets_disjoint_deterministic_and_documented(tmp_path):
    sizes = DatasetSizes(sft_train=60, sft_eval=10, prompts_train=30, prompts_eval=10)
    written = write_datasets(tmp_path / "plain", seed=4, sizes=sizes)
    chat = write_datasets(tmp_path / "chat", seed=4, chat=True, sizes=sizes)
    records = {
        name: [json.loads(line) for line in path.read_text().splitlines()]
        for name, path in written.items()
    }
    assert {name: len(r) for name, r in records.items()} == {
        "sft_train.jsonl": 60,
        "sft_eval.jsonl": 10,
        "prompts_train.jsonl": 30,
        "prompts_eval.jsonl": 10,
    }
    all_prompts = [r["prompt"] for rs in records.values() for r in rs]
    assert len(set(all_prompts)) == 110
    assert records == demo_datasets(seed=4, sizes=sizes)
    assert records != demo_datasets(seed=5, sizes=sizes)
    chat_first = json.loads(chat["sft_train.jsonl"].read_text().splitlines()[0])
    assert chat_first == as_chat(records["sft_train.jsonl"][0])
    assert chat_first["completion"][0]["role"] == "assistant"

    # The default datasets: sizes and the documented mean gold of sft_train.jsonl (seed 0).
    full = demo_datasets()
    assert [len(full[name]) for name in sorted(full)] == [200, 2000, 200, 4000]
    sft = full["sft_train.jsonl"]
    mean = gold_reward_fn([r["prompt"] for r in sft], [r["completion"] for r in sft]).mean()
    assert mean == pytest.approx(0.687, abs=5e-4)

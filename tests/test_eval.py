"""Evaluation library on constructed inputs whose answers are known: win rate with ties, KL of a
hand-built bigram policy (equal policies give 0; per-sample values and the exact expectation
computed by hand), reward-model scores on the sampler's token ids, best-of-N selection,
refusal markers, and the evaluate() table."""

from pathlib import Path

import numpy as np
import pytest

from jalign.errors import JalignError
from jalign.eval.best_of import best_of_n
from jalign.eval.compare import WinRate, outcomes_from_scores, score_judge, text_judge, win_rate
from jalign.eval.evaluate import EvalSettings, evaluate, format_table, sample_policy
from jalign.eval.kl import sequence_kl
from jalign.eval.models import EvalModel
from jalign.eval.refusal import marker_detector, refusal_rate
from jalign.eval.rewards import reward_model_scorer, text_scorer
from jalign.eval.rollouts import Rollouts
from jalign.eval.sequences import completion_sequences
from jalign.models import create_model, from_hf_dict
from jalign.sampling import SamplingParams

V, H = 8, 16
CFG = dict(
    model_type="llama",
    vocab_size=V,
    hidden_size=H,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    tie_word_embeddings=False,
)


def bigram_model(table: np.ndarray, head: str = "lm") -> EvalModel:
    """A transformer whose output at a token depends only on that token: the layers write
    nothing (o_proj and down_proj are 0), the embedding of token v is the unit vector e_v and the
    final norm maps it back to e_v, so the head reads row v of `table` ([V, V] next-token logits,
    or [V, 1] scores for the scalar head)."""
    cfg = from_hf_dict(CFG)
    graphdef, params = create_model(cfg, head=head, seed=0)
    layer = params["layers"][0]
    layer["attn"]["o_proj"]["kernel"] = np.zeros_like(layer["attn"]["o_proj"]["kernel"])
    layer["mlp"]["down_proj"]["kernel"] = np.zeros_like(layer["mlp"]["down_proj"]["kernel"])
    params["embed"]["embedding"] = np.eye(V, H, dtype=np.float32)
    params["final_norm"]["scale"] = np.full(H, 1 / np.sqrt(H), np.float32)
    out = np.zeros((H, table.shape[1]), np.float32)
    out[:V] = table
    if head == "lm":
        params["lm_head"]["kernel"] = out
    else:
        params["score"] = {"kernel": out, "bias": np.zeros(1, np.float32)}
    return EvalModel(graphdef, params, cfg, Path("bigram"))


class DigitTokenizer:
    """Token v <-> the text "v"; texts are space-separated ids."""

    pad_token_id = 0
    eos_token_id = None

    def encode(self, text):
        return [int(t) for t in text.split()]

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def make_rollouts(prompt_rows, completion_rows, width=3, new=4, prompts=None):
    """Rollouts from id lists: prompts left-padded to `width`, completions right-padded."""
    r = len(prompt_rows)
    rollouts = Rollouts(
        prompts=prompts or [" ".join(map(str, p)) for p in prompt_rows],
        completions=[" ".join(map(str, c)) for c in completion_rows],
        tokens=np.zeros((r, new), np.int32),
        logprobs=np.zeros((r, new), np.float32),
        mask=np.zeros((r, new), np.float32),
        prompt_ids=np.zeros((r, width), np.int32),
        prompt_mask=np.zeros((r, width), np.int32),
        finished_with_eos=np.zeros(r, bool),
    )
    for i, (p, c) in enumerate(zip(prompt_rows, completion_rows, strict=True)):
        rollouts.prompt_ids[i, width - len(p) :] = p
        rollouts.prompt_mask[i, width - len(p) :] = 1
        rollouts.tokens[i, : len(c)] = c
        rollouts.mask[i, : len(c)] = 1
    return rollouts


def test_win_rate_counts_ties_half():
    policy = np.array([1.0, 2.0, 3.0, 3.0, 0.0, 5.0])
    baseline = np.array([0.0, 2.0, 4.0, 3.0, 1.0, 4.95])
    outcomes = outcomes_from_scores(policy, baseline)
    np.testing.assert_array_equal(outcomes, [1, 0.5, 0, 0.5, 0, 1])
    assert WinRate.of(outcomes) == WinRate(rate=3 / 6, wins=2, ties=2, losses=2)
    # Within the tolerance 5.0 vs 4.95 is a tie: (1 + 3 * 0.5) / 6.
    assert WinRate.of(outcomes_from_scores(policy, baseline, 0.1)).rate == pytest.approx(2.5 / 6)

    ids = [[1]] * 6
    a = make_rollouts(ids, [[int(s)] for s in policy])
    b = make_rollouts(ids, [[int(s)] for s in np.floor(baseline)])
    by_token = text_scorer(lambda prompts, completions: [float(c) for c in completions])
    # Judged by a reward: floor(baseline) = [0, 2, 4, 3, 1, 4]: 2 wins, 2 ties, 2 losses.
    assert win_rate(score_judge(by_token), a, b) == WinRate(0.5, 2, 2, 2)
    # A pairwise judge callable: always prefers the first completion, or calls it a tie.
    assert win_rate(text_judge(lambda p, x, y: np.ones(len(p))), a, b).rate == 1.0
    assert win_rate(text_judge(lambda p, x, y: np.full(len(p), 0.5)), a, b).ties == 6
    with pytest.raises(JalignError, match="one outcome in"):
        win_rate(text_judge(lambda p, x, y: np.full(len(p), 2.0)), a, b)
    with pytest.raises(JalignError, match="same prompts"):
        win_rate(score_judge(by_token), a, make_rollouts([[2]] * 6, [[1]] * 6))


def test_completion_sequences_pack_prompt_and_completion_ids():
    rollouts = make_rollouts([[5, 6], [7]], [[1, 2, 3], [4]])
    batch = completion_sequences(rollouts)
    assert batch["input_ids"].shape == (2, 16)
    np.testing.assert_array_equal(batch["input_ids"][:, :5], [[5, 6, 1, 2, 3], [7, 4, 0, 0, 0]])
    np.testing.assert_array_equal(batch["segment_ids"][:, :6], [[1] * 5 + [0], [1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(batch["positions"][0, :6], [0, 1, 2, 3, 4, 0])
    np.testing.assert_array_equal(batch["loss_mask"][:, :5], [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]])


def test_reward_model_reads_the_last_token_of_the_sampled_ids():
    weights = np.arange(V, dtype=np.float32)[:, None] * 0.5  # score of a sequence = 0.5 * last id
    scorer = reward_model_scorer(bigram_model(weights, head="scalar"), rows=4)
    rollouts = make_rollouts([[5, 6], [7], [1, 1, 1], [2], [3]], [[1, 2, 3], [4], [6], [], [7]])
    np.testing.assert_allclose(scorer(rollouts), [1.5, 2.0, 3.0, 1.0, 3.5], atol=1e-4)


@pytest.fixture(scope="module")
def bigram_runs():
    rng = np.random.default_rng(0)
    tables = {name: rng.normal(0, 1.5, (V, V)).astype(np.float32) for name in ("pi", "ref")}
    models = {name: bigram_model(t) for name, t in tables.items()}
    settings = EvalSettings(
        SamplingParams(temperature=1.0, n=128, max_new_tokens=3, eos_ids=(), seed=3), batch_size=2
    )
    return tables, models, settings


def test_kl_equal_policies_is_zero_and_matches_hand_computation(bigram_runs):
    tables, models, settings = bigram_runs
    prompts = ["1", "4"]
    rows = evaluate(
        {"pi": models["pi"], "same": models["ref"]},
        DigitTokenizer(),
        prompts,
        settings,
        reference=models["ref"],
    )
    assert rows[1]["kl"] == 0.0 and rows[1]["kl_stderr"] == 0.0

    rollouts = sample_policy(models["pi"], DigitTokenizer(), prompts, settings)
    got = sequence_kl(models["pi"], models["ref"], rollouts, temperature=1.0, rows=64)
    assert rows[0]["kl"] == pytest.approx(got.mean(), abs=1e-9)  # same seed: same samples

    logp = {name: log_softmax(t.astype(np.float64)) for name, t in tables.items()}
    prev = np.concatenate([rollouts.prompt_ids[:, -1:], rollouts.tokens[:, :-1]], axis=1)
    by_hand = (logp["pi"][prev, rollouts.tokens] - logp["ref"][prev, rollouts.tokens]).sum(1)
    np.testing.assert_allclose(got, by_hand, atol=2e-4)

    # The exact sequence KL of the two Markov chains, E over 3 steps, averaged over prompts.
    p = np.exp(logp["pi"])
    step_kl = (p * (logp["pi"] - logp["ref"])).sum(1)
    exact = 0.0
    for start in (1, 4):
        state = np.eye(V)[start]
        for _ in range(3):
            exact += state @ step_kl / 2
            state = state @ p
    assert abs(got.mean() - exact) < 4 * rows[0]["kl_stderr"], (got.mean(), exact)


def test_evaluate_table_has_every_metric(bigram_runs):
    _, models, settings = bigram_runs
    gold = text_scorer(lambda prompts, completions: [c.count("3") for c in completions])
    rows = evaluate(
        {"pi": models["pi"]},
        DigitTokenizer(),
        ["1", "4"],
        settings,
        rewards={"threes": gold},
        reference=models["ref"],
        baseline=models["ref"],
        judge=score_judge(gold),
        refusal=marker_detector([r"^7"]),
    )
    assert [r["policy"] for r in rows] == ["pi", "baseline"]
    pi = rows[0]
    assert pi["length"] == 3.0 and pi["eos_rate"] == 0.0
    assert pi["wins"] + pi["ties"] + pi["losses"] == 256
    assert pi["win_rate"] == pytest.approx((pi["wins"] + 0.5 * pi["ties"]) / 256)
    assert 0 < pi["refusal_rate"] < 1 and rows[1]["kl"] == 0.0
    table = format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["policy", "reward/threes", "kl"]
    assert len(table.splitlines()) == 3


def test_best_of_n_picks_the_first_highest_score():
    scores = np.array([0.1, 0.5, 0.5, 0.2, 3.0, 1.0, 2.0, 0.0, -1.0, -1.0, -1.0, -1.0])
    np.testing.assert_array_equal(best_of_n(scores, 4), [1, 4, 8])
    np.testing.assert_array_equal(best_of_n(scores, 1), np.arange(12))
    with pytest.raises(JalignError, match="best-of-5"):
        best_of_n(scores, 5)


def test_refusal_markers():
    detector = marker_detector([r"\bI can(?:not|'t)\b", "as an ai"])
    texts = ["Sure: 1 2 3", "I can't help with that", "As an AI, no.", "I cannot", "cannot"]
    assert refusal_rate(detector, texts) == pytest.approx(3 / 5)
    with pytest.raises(JalignError, match="do not compile"):
        marker_detector(["("])

"""KTO and RRHF as `dpo.loss_type`s of the one DPO trainer: the data kind follows the loss type,
KTO's mismatched pairs are spliced right, and a few steps on a random-init model move the
implicit rewards the right way."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from tiny_runs import tiny_dpo_config

from jalign.demo.build import DatasetSizes, demo_datasets
from jalign.demo.task import ImperfectDemonstrator, gold_reward_fn, ideal_completion
from jalign.errors import JalignError
from jalign.train.loop import train
from jalign.train.objectives.kto import mismatched_rows
from jalign.train.trainers import load_trainer_config, objectives


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Unpaired and ranked records built from the ideal sort and imperfect demonstrations."""
    root = tmp_path_factory.mktemp("dpo_family")
    sizes = DatasetSizes(sft_train=8, sft_eval=8, prompts_train=64, prompts_eval=8)
    prompts = [r["prompt"] for r in demo_datasets(0, sizes)["prompts_train.jsonl"]]
    rng = np.random.default_rng(0)
    demo = ImperfectDemonstrator()
    ideal = [ideal_completion(p) for p in prompts]
    noisy = [[demo.complete(p, rng) for _ in range(2)] for p in prompts]
    unpaired, ranked = [], []
    for p, good, bad in zip(prompts, ideal, noisy, strict=True):
        responses = [good, *bad]
        scores = gold_reward_fn([p] * 3, responses).tolist()
        ranked.append({"prompt": p, "responses": responses, "scores": scores})
        unpaired.append({"prompt": p, "completion": good, "label": True})
        if scores[1] < scores[0]:
            unpaired.append({"prompt": p, "completion": bad[0], "label": False})
    return {
        "unpaired": _write(root / "unpaired.jsonl", unpaired),
        "ranked": _write(root / "ranked.jsonl", ranked),
    }


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def test_mismatched_rows_splice_prompt_and_next_completion():
    # Row 0: prompt [5, 6] + completion [7, 8, 9]; row 1: prompt [10, 13, 14] + completion
    # [11, 12]; row 2 is a padding copy of row 1 (example_mask 0).
    ids = np.array([[5, 6, 7, 8, 9, 0], [10, 13, 14, 11, 12, 0], [10, 13, 14, 11, 12, 0]], np.int32)
    seg = (ids > 0).astype(np.int32)
    mask = np.array([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0]], np.float32)
    rows = {
        "input_ids": ids,
        "positions": np.cumsum(seg, 1) - 1,
        "segment_ids": seg,
        "loss_mask": mask,
    }
    out = mismatched_rows(jax_rows(rows), jnp.array([1.0, 1.0, 0.0]))
    # Row 0 takes row 1's completion; row 1 wraps to row 0's, cut at the width 6; row 2 (pad)
    # also pairs with row 0.
    np.testing.assert_array_equal(
        out["input_ids"], [[5, 6, 11, 12, 0, 0], [10, 13, 14, 7, 8, 9], [10, 13, 14, 7, 8, 9]]
    )
    np.testing.assert_array_equal(
        out["loss_mask"], [[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
    )
    np.testing.assert_array_equal(out["segment_ids"], [[1, 1, 1, 1, 0, 0], *[[1] * 6] * 2])
    np.testing.assert_array_equal(out["positions"][0], [0, 1, 2, 3, 0, 0])


def jax_rows(rows):
    return {k: jnp.asarray(v) for k, v in rows.items()}


def test_kto_trains_on_unpaired_data(data, tmp_path):
    result = train(
        tiny_dpo_config(tmp_path / "kto", data["unpaired"], loss_type="kto"), objectives()["dpo"]
    )
    records = _records(tmp_path / "kto")
    # Step 1: policy == reference, so r = z0 = 0 and every example costs 1 - sigmoid(0) = 0.5.
    assert records[0]["loss"] == pytest.approx(0.5, abs=1e-6)
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert records[1]["kl"] > 0  # the reference point moves once the policy does
    # Desirable completions gain more implicit reward than undesirable ones (held-in eval).
    assert result.eval_metrics["loss"] < 0.5 - 0.02
    assert result.eval_metrics["rewards/margins"] > 0.1


def test_rrhf_trains_on_ranked_data(data, tmp_path):
    result = train(
        tiny_dpo_config(tmp_path / "rrhf", data["ranked"], loss_type="rrhf"), objectives()["dpo"]
    )
    records = _records(tmp_path / "rrhf")
    assert records[-1]["loss"] < records[0]["loss"]
    assert result.eval_metrics["nll_loss"] < records[0]["nll_loss"]
    assert result.eval_metrics["rank_loss"] < records[0]["rank_loss"]
    assert result.eval_metrics["rewards/accuracies"] > 0.6


@pytest.mark.parametrize(
    ("loss_type", "dpo", "message"),
    [
        (
            "kto",
            {"reference": "precomputed"},
            r"'dpo\.reference' is 'precomputed'.*allowed: 'live'",
        ),
        ("rrhf", {"label_smoothing": 0.1}, r"'dpo\.label_smoothing' is 0\.1.*allowed: 0"),
        ("sigmoid", {"online": {"every": 2}}, r"'data\.train' is .*allowed: ''"),
    ],
)
def test_bad_combinations_are_config_errors(data, tmp_path, loss_type, dpo, message):
    cfg = tiny_dpo_config(tmp_path / "bad", data["unpaired"], loss_type=loss_type)
    for key, value in dpo.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                cfg.dpo[key][sub] = v
        else:
            cfg.dpo[key] = value
    with pytest.raises(JalignError, match=message):
        train(cfg, objectives()["dpo"])


@pytest.mark.parametrize(
    ("name", "kind"), [("kto_demo.py", "unpaired"), ("semi_online_dpo_demo.py", "preference")]
)
def test_bundled_configs_validate(name, kind):
    root = Path(__file__).resolve().parents[1] / "configs"
    cfg, objective = load_trainer_config("dpo", str(root / name))
    objective.validate(cfg)
    assert objective.kind(cfg) == kind

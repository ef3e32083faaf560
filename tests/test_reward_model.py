"""The reward-model trainer on ranked records: k responses' k(k-1)/2 comparisons, trained at
once, give the losses and accuracies of the same comparisons trained as pairs, step by step,
with records of 3 and 4 responses in one file (the 3s padded to k = 4 and masked); and
the exported HF folder (and its `jalign convert` copy) holds the trained, centred score head."""

import json

import numpy as np
import pytest

from jalign.demo import paths
from jalign.demo.build import DatasetSizes, demo_datasets
from jalign.demo.preferences import ranking_pairs, write_jsonl
from jalign.demo.run import stage_config
from jalign.demo.task import ImperfectDemonstrator, rank_completions
from jalign.interop import convert, load_hf_model
from jalign.train.loop import train
from jalign.train.trainers import objectives

STEPS = 5


def _rankings(seed: int) -> list[dict]:
    """8 prompts, 3 or 4 imperfect demonstrations each (3 first, so k is not the first
    record's), ranked by gold reward (ties included)."""
    sizes = DatasetSizes(sft_train=8, sft_eval=8, prompts_train=8, prompts_eval=8)
    prompts = [r["prompt"] for r in demo_datasets(0, sizes)["prompts_train.jsonl"]]
    rng = np.random.default_rng(seed)
    demonstrator = ImperfectDemonstrator()
    return [
        rank_completions(
            p, [demonstrator.complete(p, rng) for _ in range(3 + i % 2)], rng, beta=1e4
        )
        for i, p in enumerate(prompts)
    ]


def _run(run_dir, data, data_kind: str, batch_size: int):
    cfg = stage_config(
        "rm",
        run_dir,
        model={"path": str(paths()), "init": "random"},
        data={"train": str(data), "eval": str(data), "max_length": 32, "num_epochs": None},
        train={
            "batch_size": batch_size,
            "total_steps": STEPS,
            "log_every": 1,
            "eval_every": STEPS,
            "save_every": STEPS,
            "eval_batches": 1,
            "export_hf": data_kind == "ranked",
        },
        optimizer={"lr": 3e-3, "warmup_steps": 0},
        rm={"data_kind": data_kind},
    )
    result = train(cfg, objectives()["rm"])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    train_lines = [json.loads(line) for line in lines if '"grad_norm"' in line]
    return result, [(line["loss"], line["grad_norm"]) for line in train_lines]


def test_ranked_records_train_like_their_pairs(tmp_path):
    # The first draw whose pairs fill whole batches on the suite's 8 devices.
    rankings = next(r for r in map(_rankings, range(100)) if len(ranking_pairs(r)) % 8 == 0)
    pairs = ranking_pairs(rankings)
    assert 24 < len(pairs) < 6 * len(rankings)  # some ties make no pair
    ranked_file = write_jsonl(rankings, tmp_path / "rankings.jsonl")
    pairs_file = write_jsonl(pairs, tmp_path / "pairs.jsonl")
    # One batch holds every record, so each step sees the same comparisons in both forms.
    ranked, ranked_losses = _run(tmp_path / "ranked", ranked_file, "ranked", len(rankings))
    paired, paired_losses = _run(tmp_path / "pairs", pairs_file, "preference", len(pairs))
    assert len(ranked_losses) == STEPS
    (ranked_loss, ranked_norm), (paired_loss, paired_norm) = ranked_losses[0], paired_losses[0]
    # The first step's loss and gradient norm: the same to float32 rounding (2e-7 here).
    assert ranked_loss == pytest.approx(paired_loss, rel=2e-6)
    assert ranked_norm == pytest.approx(paired_norm, rel=2e-6)
    # Then float32 sums in another order, compounded by Adam's steps: ~1e-5 apart at the fifth
    # (at lr 1e-2 they drift apart 3x a step, to 2e-4).
    losses = np.array([[loss for loss, _ in run] for run in (ranked_losses, paired_losses)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    # The steps move the loss, so equal later losses mean equal updates.
    assert np.ptp(losses[0]) > 0.01
    for key in ("loss", "accuracy", "margin"):
        assert ranked.eval_metrics[key] == pytest.approx(
            paired.eval_metrics[key], rel=1e-4, abs=1e-4
        )
    # The export keeps the score head, its bias shifted by the centring, and so does
    # `jalign convert` of the export.
    copy = convert(tmp_path / "ranked" / "hf", tmp_path / "copy")
    for folder in (tmp_path / "ranked" / "hf", copy):
        _, _, exported = load_hf_model(folder, head="scalar")
        for name in ("kernel", "bias"):
            np.testing.assert_array_equal(exported["score"][name], ranked.params["score"][name])
    shift = ranked.metrics["rm/reward_mean_before_centering"]
    assert abs(shift) > 1e-3

"""The DPO trainer: precomputed reference logprobs reproduce the live reference's losses, and
training moves the implicit reward margins the right way."""

import json

import numpy as np
import pytest
from tiny_runs import tiny_dpo_config

from jalign.demo.build import DatasetSizes, demo_datasets
from jalign.demo.preferences import ranking_pairs
from jalign.demo.task import ImperfectDemonstrator, ideal_completion, rank_completions
from jalign.train.loop import train
from jalign.train.trainers import objectives


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    """Pairs of the ideal sort vs an imperfect demonstration, labelled by the gold reward."""
    root = tmp_path_factory.mktemp("dpo")
    sizes = DatasetSizes(sft_train=8, sft_eval=8, prompts_train=96, prompts_eval=8)
    prompts = [r["prompt"] for r in demo_datasets(0, sizes)["prompts_train.jsonl"]]
    rng = np.random.default_rng(0)
    demo = ImperfectDemonstrator()
    ideal = [ideal_completion(p) for p in prompts]
    noisy = [demo.complete(p, rng) for p in prompts]
    records = ranking_pairs(
        [
            rank_completions(p, [i, n], rng, beta=1e4)
            for p, i, n in zip(prompts, ideal, noisy, strict=True)
        ]
    )
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line and "eval" not in line]


def test_precomputed_reference_matches_live_reference(pairs_file, tmp_path):
    live = train(
        tiny_dpo_config(tmp_path / "live", pairs_file, reference="live"), objectives()["dpo"]
    )
    pre = train(
        tiny_dpo_config(tmp_path / "pre", pairs_file, reference="precomputed"), objectives()["dpo"]
    )
    np.testing.assert_allclose(
        _losses(tmp_path / "pre"), _losses(tmp_path / "live"), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(pre.eval_metrics["loss"], live.eval_metrics["loss"], rtol=1e-5)
    # The first step compares the policy with itself: log sigmoid(0) = -log 2.
    assert _losses(tmp_path / "live")[0] == pytest.approx(np.log(2), abs=1e-6)
    assert list((tmp_path / "pre").glob("reference_logps-*.npy")), "the table is cached"
    # Training separates chosen from rejected on the (held-in) eval pass.
    assert live.eval_metrics["loss"] < np.log(2) - 0.05
    assert live.eval_metrics["rewards/accuracies"] > 0.6


def test_reference_free_simpo_trains(pairs_file, tmp_path):
    result = train(
        tiny_dpo_config(tmp_path / "simpo", pairs_file, steps=8, loss_type="simpo"),
        objectives()["dpo"],
    )
    assert result.eval_metrics["rewards/accuracies"] > 0.6
    assert result.eval_metrics["rewards/margins"] > 0

"""`jalign eval` end to end on tiny random models on an 8-device mesh: a row per policy and
the baseline, a JSON report, KL 0 and win rate 0.5 (all ties) for a policy equal to the
reference and the baseline."""

import json

import pytest
from test_generate_best_of import tiny_demo_model

from jalign.cli import main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cli")
    prompts = root / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"sort: {i} 3 {9 - i}"}) + "\n" for i in range(6))
    )
    return {
        "sft": tiny_demo_model(root / "sft" / "hf", seed=0),
        "other": tiny_demo_model(root / "other", seed=1),
        "rm": tiny_demo_model(root / "rm", head="scalar", seed=2),
        "prompts": prompts,
        "out": root / "report.json",
    }


def test_eval_cli_table_and_report(folders, capsys):
    f = folders
    argv = ["eval", "--policy", str(f["sft"]), "--policy", f"other={f['other']}"]
    argv += ["--reference", str(f["sft"]), "--baseline", str(f["sft"])]
    argv += ["--prompts", str(f["prompts"]), "--limit", "5", "--batch-size", "4"]
    argv += ["--reward", "gold=jalign.demo.task:gold_reward_fn", "--reward", str(f["rm"])]
    argv += ["--refusal-marker", "^0", "--max-new-tokens", "8", "--n", "2", "--seed", "1"]
    argv += ["--out", str(f["out"]), "--mesh", "data=-1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["policy", "reward/gold", "reward/rm", "kl"]
    assert [line.split()[0] for line in lines[1:]] == ["sft", "other", "baseline"]

    report = json.loads(f["out"].read_text())
    assert report["num_prompts"] == 5 and report["rewards"]["gold"].endswith(":gold_reward_fn")
    sft, other, baseline = report["rows"]
    # The policy is the reference and the baseline: same samples, KL 0, every pair a tie.
    assert sft["kl"] == 0.0 and (sft["win_rate"], sft["ties"]) == (0.5, 10)
    for key in ("reward/gold", "reward/rm", "length", "refusal_rate"):
        assert sft[key] == baseline[key]
    assert other["kl"] != 0.0 and other["wins"] + other["ties"] + other["losses"] == 10
    assert "win_rate" not in baseline


def test_eval_cli_errors(folders, capsys):
    f = folders
    argv = ["eval", "--policy", str(f["sft"]), "--prompts", str(f["prompts"])]
    assert main([*argv, "--reward", "no_colon_or_folder"]) == 2
    assert "neither a folder nor a function" in capsys.readouterr().err
    assert main([*argv, "--judge", "gold"]) == 2
    assert "--judge needs --baseline" in capsys.readouterr().err

"""A run killed with SIGKILL mid-run resumes from its last checkpoint and reproduces, step for
step and bit for bit, the losses of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """
import ml_collections
from jalign.demo import paths

def get_config():
    cfg = ml_collections.ConfigDict()
    cfg.run_dir = "unset"
    cfg.model = ml_collections.ConfigDict({"path": str(paths()), "init": "random"})
    cfg.data = ml_collections.ConfigDict(
        {"train": "DATA/sft_train.jsonl", "max_length": 32, "num_epochs": None}
    )
    cfg.train = ml_collections.ConfigDict(
        {"batch_size": 8, "total_steps": 14, "log_every": 1, "save_every": 3, "export_hf": False}
    )
    cfg.optimizer = ml_collections.ConfigDict({"lr": 3e-3, "warmup_steps": 2})
    return cfg
"""


def _command(config: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jalign.cli",
        "sft",
        "--config",
        str(config),
        f"--config.run_dir={run_dir}",
    ]


def _run(command: list[str], env: dict) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    from jalign.demo import write_datasets
    from jalign.demo.build import DatasetSizes

    root = tmp_path_factory.mktemp("resume")
    write_datasets(
        root / "data",
        seed=0,
        sizes=DatasetSizes(sft_train=400, sft_eval=16, prompts_train=16, prompts_eval=16),
    )
    config = root / "config.py"
    config.write_text(CONFIG.replace("DATA", str(root / "data")))
    return config


def test_sigkill_and_resume_reproduces_losses(config_file, tmp_path):
    env = {**os.environ, "CI": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # The uninterrupted run goes on beside the one that is killed (the two cores share them).
    log = (tmp_path / "straight.log").open("w")
    straight_run = subprocess.Popen(
        _command(config_file, straight), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    proc = subprocess.Popen(
        _command(config_file, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _losses(killed)
    assert 8 <= len(partial) < 14, "the kill must land mid-run"
    returncode = straight_run.wait()
    log.close()
    assert returncode == 0, (tmp_path / "straight.log").read_text()[-3000:]
    expected = _losses(straight)
    assert sorted(expected) == list(range(1, 15))

    _run(_command(config_file, killed), env)
    resumed = _losses(killed)
    assert resumed == expected  # bitwise: the JSON floats are the exact float32 values

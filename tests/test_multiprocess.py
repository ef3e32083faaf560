"""A 2-process job (2 processes x 4 CPU devices, gloo collectives) trains SFT exactly like one
process with all 8 devices: same losses step for step, and orbax checkpoints written by both
processes together.

Each process runs the real CLI entry, `python -m jalign.cli --distributed sft ...`, with the
coordinator in `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`; how those
env variables are read is checked on its own, without starting processes.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jalign.demo import paths
from jalign.demo.task import ideal_completion, sample_prompts
from jalign.distributed import (
    DistributedSettings,
    initialize_from_env,
    requested,
    settings_from_env,
)
from jalign.errors import JalignError
from jalign.interop import load_hf_model
from jalign.train.loop import train
from jalign.train.trainers import load_trainer_config

STEPS = 3
CONFIG = f"""
import ml_collections

def get_config():
    cfg = ml_collections.ConfigDict()
    cfg.model = ml_collections.ConfigDict(dict(path={str(paths())!r}, init="random"))
    cfg.mesh = "data=8"
    cfg.data = ml_collections.ConfigDict(dict(train="", max_length=24, num_epochs=None))
    cfg.train = ml_collections.ConfigDict(
        dict(batch_size=16, total_steps={STEPS}, log_every=1, save_every=2, export_hf=True)
    )
    cfg.optimizer = ml_collections.ConfigDict(dict(lr=3e-3, warmup_steps=0))
    return cfg
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    prompts = sample_prompts(64, np.random.default_rng(0))
    data = root / "sft.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": p, "completion": ideal_completion(p)}) + "\n" for p in prompts
        )
    )
    config = root / "config.py"
    config.write_text(CONFIG)
    return root, config, data


def _launch(config: Path, data: Path, run_dir: Path) -> list[subprocess.Popen]:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env = {
        **os.environ,
        "XLA_FLAGS": " ".join([*flags, "--xla_force_host_platform_device_count=4"]),
        "JAX_PLATFORMS": "cpu",
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
        "JAX_NUM_PROCESSES": "2",
    }
    command = [
        sys.executable,
        "-m",
        "jalign.cli",
        "--distributed",
        "sft",
        "--config",
        str(config),
        f"--config.data.train={data}",
        f"--config.run_dir={run_dir}",
    ]
    return [
        subprocess.Popen(
            command,
            env={**env, "JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def test_two_processes_match_one(setup):
    root, config, data = setup
    procs = _launch(config, data, root / "two")
    try:
        # Meanwhile this process (8 devices, see conftest.py) runs the same job alone.
        cfg, objective = load_trainer_config(
            "sft", str(config), [f"--config.data.train={data}", f"--config.run_dir={root / 'one'}"]
        )
        train(cfg, objective)
        outputs = [proc.communicate(timeout=150)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]

    expected = _losses(root / "one")
    got = _losses(root / "two")
    assert len(expected) == STEPS
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Both processes took part in each orbax save; the steps are committed.
    for step in (2, 3):
        assert (root / "two" / "checkpoints" / str(step) / "commit_success.txt").exists()
    # The parameters were gathered from both processes and written once, by process 0. Adam
    # divides each gradient entry by its own scale, so where an entry is near zero, float32
    # summation-order differences between the two all-reduces move its weight by up to ~2e-6
    # over the 3 steps; a step missed or applied twice moves weights by lr = 3e-3.
    _, _, two = load_hf_model(root / "two" / "hf")
    _, _, one = load_hf_model(root / "one" / "hf")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), two, one)


def test_distributed_settings_from_env():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4"}
    assert settings_from_env({**env, "JAX_PROCESS_ID": "3"}) == DistributedSettings(
        "10.0.0.1:1234", 4, 3
    )
    assert requested(env=env) and requested(True, {}) and not requested(env={})
    assert requested(env={"JALIGN_DISTRIBUTED": "yes"})
    assert not requested(env={"JALIGN_DISTRIBUTED": "0"})
    assert settings_from_env({}) == DistributedSettings()  # all None: JAX auto-detects
    # One process: nothing to initialize.
    assert initialize_from_env(env={"JALIGN_DISTRIBUTED": "1", "JAX_NUM_PROCESSES": "1"}) is False
    with pytest.raises(JalignError, match="JAX_PROCESS_ID=4 is not allowed"):
        settings_from_env({**env, "JAX_PROCESS_ID": "4"})
    with pytest.raises(JalignError, match="JAX_NUM_PROCESSES='two'"):
        settings_from_env({"JAX_NUM_PROCESSES": "two"})
    with pytest.raises(JalignError, match="JALIGN_DISTRIBUTED='maybe'"):
        requested(env={"JALIGN_DISTRIBUTED": "maybe"})

"""Process settings of the benchmarks, and their PyTorch peer in a child process with the peer's
own default environment.

The `jalign` command restarts itself with glibc's huge-page malloc tunable
(`jalign.runtime.restart_with_huge_pages`), which speeds up XLA's large fresh buffers but slowed
PyTorch's training steps here (TRL's SFT step 384 -> 449 ms). So a benchmark measures jalign in
the environment its command runs in, and the peer in a child process without the tunable: each
as its users run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import torch
import transformers

PEER_FLAG = "--peer"  # the hidden argument a benchmark script takes to measure only its peer


def measure_peer(script: str, request: dict, first_on_path: Path | None = None) -> dict:
    """Run `script --peer REQUEST_JSON` without GLIBC_TUNABLES (and with the restart turned off)
    and return the JSON object it prints on its last line of stdout. `first_on_path`: a folder
    of packages the child imports ahead of the virtual environment's (another peer version)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["JALIGN_HUGE_PAGES"] = "0"
    if first_on_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(first_on_path), env.get("PYTHONPATH")) if p
        )
    proc = subprocess.run(
        [sys.executable, script, PEER_FLAG, json.dumps(request)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peer measurement failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report_peer(result: dict) -> None:
    """The child's side of `measure_peer`: its result as the last line of stdout."""
    print(json.dumps(result), flush=True)


def quiet_peer_libraries() -> None:
    """PyTorch on every core; transformers' and datasets' logging and progress bars off."""
    torch.set_num_threads(os.cpu_count() or 1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()

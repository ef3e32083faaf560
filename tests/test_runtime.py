"""`restart_with_huge_pages`: the process re-executes itself once with glibc's huge-page tunable,
keeping its arguments, and leaves a user's own GLIBC_TUNABLES (or an opt-out) alone."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from jalign.runtime import HUGE_PAGES_TUNABLE

SCRIPT = """
import os, sys
from jalign.runtime import restart_with_huge_pages
print("start", os.getpid(), flush=True)
restart_with_huge_pages()
print("ran", os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])
"""


def _run(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JALIGN_HUGE_PAGES")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, "a", "--b=1"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def _thp_usable() -> bool:
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return sys.platform == "linux" and platform.libc_ver()[0] == "glibc" and "[never]" not in mode


@pytest.mark.skipif(not _thp_usable(), reason="needs Linux, glibc and transparent huge pages")
def test_restarts_once_with_the_tunable_same_pid_and_arguments():
    lines = _run()
    # The script started twice in one process: before and after the exec.
    assert [line.split()[0] for line in lines] == ["start", "start", "ran"]
    pid = lines[0].split()[1]
    assert lines[1].split()[1] == pid
    assert lines[2] == f"ran {pid} {HUGE_PAGES_TUNABLE} ['a', '--b=1']"


@pytest.mark.parametrize(
    "env", [{"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, {"JALIGN_HUGE_PAGES": "0"}]
)
def test_users_setting_or_opt_out_is_left_alone(env):
    lines = _run(**env)
    assert [line.split()[0] for line in lines] == ["start", "ran"]
    assert lines[1].split()[2] == env.get("GLIBC_TUNABLES", "None")

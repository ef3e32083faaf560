"""Process-level settings, applied before JAX is first imported: XLA flags, and huge pages for
large host buffers.

On CPU, jax 0.10's XLA routes matmul fusions through YNNPACK, whose float32 results drift
further from a float64 reference (about 1.4e-4 on SmolLM2-135M's logits) than PyTorch's
(5.8e-5); disabling those fusions brings jalign to 6.4e-5 and is also faster on this machine
(0.16 s vs 0.20 s for a [2, 40] SmolLM2 forward). Measured with tools in the test suite's
parity checks; other platforms ignore the flag.

The sampler's decode program is the exception (`decode_compiler_options`): its matmuls have as
many rows as the batch, where YNNPACK's dots beat XLA's own (demo-size decode step, batch 8:
3.2 -> 2.4 ms; SmolLM2-135M: 56 -> 45 ms), and its greedy tokens still equal transformers'
(the parity tests in tests/test_sampling.py run with it).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)


def configure_xla_flags(extra: tuple[str, ...] = ()) -> None:
    """Append jalign's XLA flags to `XLA_FLAGS` unless the user already set them."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    names = {f.split("=")[0] for f in flags}
    for flag in (*CPU_FLAGS, *extra):
        if flag.split("=")[0] not in names:
            flags.append(flag)
    os.environ["XLA_FLAGS"] = " ".join(flags)


def decode_compiler_options(platform_name: str) -> dict[str, str] | None:
    """`jax.jit` compiler options of the sampler's decode program on `platform_name` (a jax
    platform: "cpu", "gpu", "tpu"): YNNPACK dots on CPU, each fused alone (see the module
    docstring), none elsewhere."""
    if platform_name != "cpu":
        return None
    return {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def restart_with_huge_pages() -> None:
    """Re-execute this process, once, with glibc's malloc asking for transparent huge pages.

    XLA on CPU allocates every large buffer of a step (activations, gradients, optimizer
    temporaries) afresh, and glibc serves each one with a new mmap: writing it page-faults every
    4 KiB page. With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35) those mappings
    are made with MADV_HUGEPAGE, one fault per 2 MiB: a 113 MB elementwise result took 11.7 ms
    instead of 39.5 ms here, and the demo-size SFT step 251 ms instead of 303 ms. glibc reads
    tunables only when a process starts, hence the re-exec, which keeps the pid, the arguments
    and the open files, and happens before anything else runs.

    Does nothing unless this is Linux with glibc and transparent huge pages in `madvise` or
    `always` mode, nor when `GLIBC_TUNABLES` is already set (by the user, or by the restart
    itself) or `JALIGN_HUGE_PAGES=0`.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return
    if "GLIBC_TUNABLES" in os.environ or os.environ.get("JALIGN_HUGE_PAGES") == "0":
        return
    try:
        mode = _THP_MODE.read_text()
    except OSError:
        return
    if "[never]" in mode:
        return
    env = {**os.environ, "GLIBC_TUNABLES": HUGE_PAGES_TUNABLE}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def prepare_command_process() -> None:
    """What a jalign command (the `jalign` CLI, `python -m jalign.demo.run`, the benchmarks'
    jalign side) applies before any JAX work: the huge-page restart, then the XLA flags."""
    restart_with_huge_pages()
    configure_xla_flags()

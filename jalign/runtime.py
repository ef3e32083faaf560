"""Process-level XLA settings, applied before JAX is first imported.

On CPU, jax 0.10's XLA routes matmul fusions through YNNPACK, whose float32 results drift
further from a float64 reference (about 1.4e-4 on SmolLM2-135M's logits) than PyTorch's
(5.8e-5); disabling those fusions brings jalign to 6.4e-5 and is also faster on this machine
(0.16 s vs 0.20 s for a [2, 40] SmolLM2 forward). Measured with tools in the test suite's
parity checks; other platforms ignore the flag.
"""

from __future__ import annotations

import os

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)


def configure_xla_flags(extra: tuple[str, ...] = ()) -> None:
    """Append jalign's XLA flags to `XLA_FLAGS` unless the user already set them."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    names = {f.split("=")[0] for f in flags}
    for flag in (*CPU_FLAGS, *extra):
        if flag.split("=")[0] not in names:
            flags.append(flag)
    os.environ["XLA_FLAGS"] = " ".join(flags)

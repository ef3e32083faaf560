"""Repository-wide pytest setup: every test process sees 8 simulated CPU devices.

The flags must be set before JAX is first imported, so they live here (loaded by pytest before
any test module). Single-device tests simply use the default device.
"""

import os

from jalign.runtime import configure_xla_flags

configure_xla_flags(("--xla_force_host_platform_device_count=8",))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

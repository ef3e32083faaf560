"""Repository-wide pytest setup: every test process sees 8 simulated CPU devices.

The flag must be set before JAX is first imported, so it lives here (loaded by pytest before any
test module). Single-device tests simply use the default device.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

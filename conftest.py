"""Repository-wide pytest setup: every test process sees 8 simulated CPU devices, and every
test process (the suite and the runs it starts) shares one XLA compilation cache.

The flags must be set before JAX is first imported, so they live here (loaded by pytest before
any test module). Single-device tests simply use the default device. The suite runs many short
trainings of the same tiny shapes, each with freshly built jitted functions, in this process
and in subprocesses: with JAX's persistent compilation cache in a directory of the session's
own, a program compiled once is loaded, not compiled again, by the later runs.
"""

import atexit
import os
import shutil
import tempfile

from jalign.runtime import configure_xla_flags

configure_xla_flags(("--xla_force_host_platform_device_count=8",))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    cache_dir = tempfile.mkdtemp(prefix="jalign-tests-xla-cache-")
    atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

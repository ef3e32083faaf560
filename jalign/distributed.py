"""Multi-host (multi-controller) start-up: `jax.distributed.initialize` from flags or env.

Every host runs the same `jalign ...` command; each process owns its local devices and the
meshes span the devices of all processes. Before any other JAX call the processes must meet at
a coordinator, which `initialize` arranges:

- one process (the default, or `JAX_NUM_PROCESSES=1`): nothing to do;
- explicit: `coordinator_address` ("host:port" of process 0), `num_processes` and `process_id`
  (arguments, else the env variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
  `JAX_PROCESS_ID`; `JAX_LOCAL_DEVICE_IDS` optionally picks each process's GPUs);
- auto-detected (`jalign --distributed ...` or `JALIGN_DISTRIBUTED=1` with none of the above):
  JAX reads the cluster from the environment (Cloud TPU VM metadata, SLURM, Open MPI, ...).

`jalign.cli` calls `initialize_from_env(flag)` before running a command. Data: every process
reads the same global batch and `jalign.sharding.shard_batch` keeps the rows of its own devices,
so a multi-process run computes exactly what one process with all the devices does. On CPU the
cross-process collectives use gloo (JAX's default `jax_cpu_collectives_implementation`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

import jax

from jalign.errors import JalignError

log = logging.getLogger(__name__)

ENV_FLAG = "JALIGN_DISTRIBUTED"
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """How this process joins the job; all None means auto-detection by JAX."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    @property
    def single_process(self) -> bool:
        return self.num_processes == 1


def _int_env(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < minimum:
        raise JalignError(f"env {name}={raw!r} is not allowed; allowed: an integer >= {minimum}")
    return int(raw)


def settings_from_env(env: Mapping[str, str] | None = None) -> DistributedSettings:
    """The settings the `JAX_*` env variables give (unset ones None)."""
    env = os.environ if env is None else env
    settings = DistributedSettings(
        coordinator_address=env.get(ENV_COORDINATOR, "").strip() or None,
        num_processes=_int_env(env, ENV_NUM_PROCESSES, 1),
        process_id=_int_env(env, ENV_PROCESS_ID, 0),
    )
    n, i = settings.num_processes, settings.process_id
    if n is not None and i is not None and i >= n:
        raise JalignError(
            f"env {ENV_PROCESS_ID}={i} is not allowed with {ENV_NUM_PROCESSES}={n}; "
            f"allowed: 0 <= {ENV_PROCESS_ID} < {ENV_NUM_PROCESSES}"
        )
    return settings


def requested(flag: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """Whether this process should join a multi-process job: `--distributed`, a true
    `JALIGN_DISTRIBUTED`, or a set `JAX_COORDINATOR_ADDRESS`."""
    env = os.environ if env is None else env
    raw = env.get(ENV_FLAG, "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise JalignError(
            f"env {ENV_FLAG}={env.get(ENV_FLAG)!r} is not allowed; allowed: 1/true/yes/on or "
            f"0/false/no/off"
        )
    return flag or raw in _TRUE or bool(env.get(ENV_COORDINATOR, "").strip())


def initialize(settings: DistributedSettings = DistributedSettings()) -> bool:
    """Join the job described by `settings` (call before any other JAX call). Returns whether
    `jax.distributed.initialize` ran: False for a single process or when already initialized."""
    if settings.single_process:
        return False
    if jax.distributed.is_initialized():
        return False
    jax.distributed.initialize(
        coordinator_address=settings.coordinator_address,
        num_processes=settings.num_processes,
        process_id=settings.process_id,
    )
    log.info(
        "process %d of %d: %d local of %d devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def initialize_from_env(flag: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """`initialize(settings_from_env())` when `requested(flag)`; otherwise nothing."""
    if not requested(flag, env):
        return False
    return initialize(settings_from_env(env))

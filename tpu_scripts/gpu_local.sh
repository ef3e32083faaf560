#!/usr/bin/env bash
# Start this host's part of a multi-host (or multi-process) JAX job on GPUs, then run the given
# command in each process with the jax.distributed settings jalign reads (jalign/distributed.py).
#
# One process per host, seeing all its GPUs (the usual choice):
#   COORDINATOR=host0:12355 NUM_HOSTS=2 HOST_ID=0 tpu_scripts/gpu_local.sh \
#       jalign dpo --config configs/llama3_8b_h100x8.py        # on host0
#   COORDINATOR=host0:12355 NUM_HOSTS=2 HOST_ID=1 tpu_scripts/gpu_local.sh ...   # on host1
# One process per GPU (PROCS_PER_HOST=8): process id = HOST_ID * 8 + gpu, each process pinned to
# its GPU with JAX_LOCAL_DEVICE_IDS. Defaults (NUM_HOSTS=1, HOST_ID=0, COORDINATOR on
# localhost) run a single-host job. If one process fails the others are stopped.
set -euo pipefail

: "${NUM_HOSTS:=1}"
: "${HOST_ID:=0}"
: "${PROCS_PER_HOST:=1}"
: "${COORDINATOR:=127.0.0.1:12355}"

for name in NUM_HOSTS HOST_ID PROCS_PER_HOST; do
  if [[ ! "${!name}" =~ ^[0-9]+$ ]]; then
    echo "error: ${name}=${!name@Q}; allowed: a non-negative integer" >&2
    exit 2
  fi
done
if (( NUM_HOSTS < 1 || PROCS_PER_HOST < 1 || HOST_ID >= NUM_HOSTS )); then
  echo "error: need NUM_HOSTS >= 1, PROCS_PER_HOST >= 1 and 0 <= HOST_ID < NUM_HOSTS" >&2
  exit 2
fi
if [[ $# -eq 0 ]]; then
  echo "usage: [COORDINATOR=host:port NUM_HOSTS=N HOST_ID=i PROCS_PER_HOST=p] $0 jalign ARGS..." >&2
  exit 2
fi

export JAX_COORDINATOR_ADDRESS="${COORDINATOR}"
export JAX_NUM_PROCESSES=$(( NUM_HOSTS * PROCS_PER_HOST ))
export JALIGN_DISTRIBUTED=1

if (( PROCS_PER_HOST == 1 )); then
  export JAX_PROCESS_ID="${HOST_ID}"
  exec "$@"
fi

pids=()
stop_all() {
  for pid in "${pids[@]}"; do
    kill "${pid}" 2>/dev/null || true
  done
}
trap stop_all INT TERM
for (( gpu = 0; gpu < PROCS_PER_HOST; gpu++ )); do
  JAX_PROCESS_ID=$(( HOST_ID * PROCS_PER_HOST + gpu )) JAX_LOCAL_DEVICE_IDS="${gpu}" "$@" &
  pids+=("$!")
done
status=0
for _ in "${pids[@]}"; do
  if ! wait -n; then
    status=1
    stop_all
  fi
done
exit "${status}"

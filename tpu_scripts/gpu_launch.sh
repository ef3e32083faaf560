#!/usr/bin/env bash
# Launch one jalign job over several GPU hosts by ssh: host i runs tpu_scripts/gpu_local.sh with
# HOST_ID=i, the first host being the coordinator. jalign must be installed at the same path
# (REMOTE_DIR, a shared filesystem or an identical checkout with its .venv) on every host.
#
#   HOSTS="gpu-a gpu-b" tpu_scripts/gpu_launch.sh jalign dpo --config configs/llama3_8b_h100x8.py
#   HOSTS="gpu-a gpu-b" PROCS_PER_HOST=8 tpu_scripts/gpu_launch.sh jalign sft --config ...
#
# Each host's output is prefixed with its name; the script fails if any host fails.
set -euo pipefail

: "${HOSTS:?set HOSTS to the space-separated host names, coordinator first}"
: "${PORT:=12355}"
: "${PROCS_PER_HOST:=1}"
: "${REMOTE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

if [[ $# -eq 0 ]]; then
  echo "usage: HOSTS=\"h0 h1 ...\" $0 jalign ARGS..." >&2
  exit 2
fi
read -r -a hosts <<< "${HOSTS}"
command_line="$(printf '%q ' "$@")"

pids=()
for i in "${!hosts[@]}"; do
  remote="cd $(printf '%q' "${REMOTE_DIR}") && export PATH=\$PWD/.venv/bin:\$PATH \
&& COORDINATOR=${hosts[0]}:${PORT} NUM_HOSTS=${#hosts[@]} HOST_ID=${i} \
PROCS_PER_HOST=${PROCS_PER_HOST} tpu_scripts/gpu_local.sh ${command_line}"
  # A subshell, so that its status is ssh's (pipefail), not sed's.
  (ssh -o BatchMode=yes "${hosts[i]}" "bash -c $(printf '%q' "${remote}")" 2>&1 \
    | sed -u "s/^/[${hosts[i]}] /") &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  wait "${pid}" || status=1
done
exit "${status}"

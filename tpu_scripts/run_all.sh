#!/usr/bin/env bash
# Run the same jalign command on every host of the slice, as one multi-controller JAX job.
#
#   tpu_scripts/run_all.sh jalign --distributed dpo --config configs/llama3_8b_v5p64.py
#   tpu_scripts/run_all.sh jalign --distributed sft --config configs/sft_demo.py \
#       --config.train.total_steps=10
#
# Each host runs the command in ~/$REMOTE_DIR with the virtual environment first on PATH.
# `--distributed` makes jalign call jax.distributed.initialize(), which on a TPU VM finds the
# coordinator and every host's id from the slice's metadata (no addresses to pass). Output is
# streamed from all hosts and also kept in ~/$REMOTE_DIR/logs/ on each. The command arguments
# are quoted for the remote shell, so spaces and special characters survive.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "${here}/common.sh"

if [[ $# -eq 0 ]]; then
  echo "usage: $0 jalign --distributed COMMAND [ARGS...]" >&2
  exit 2
fi
command_line="$(printf '%q ' "$@")"
stamp="$(date -u +%Y%m%d-%H%M%S)"

tpu_ssh_all "cd ~/${REMOTE_DIR}
mkdir -p logs
export PATH=\$PWD/.venv/bin:\$PATH
set -o pipefail
${command_line} 2>&1 | tee logs/${stamp}-\$(hostname).log"

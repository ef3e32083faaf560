#!/usr/bin/env bash
# Create a TPU VM or pod slice and wait until it is READY.
#
#   tpu_scripts/create_tpu.sh                  # v5p-64 named jalign-v5p-64 (see common.sh)
#   ACCELERATOR_TYPE=v5p-8 TPU_NAME=dev tpu_scripts/create_tpu.sh
#   SPOT=1 tpu_scripts/create_tpu.sh           # a Spot slice (cheaper, may be preempted)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "${here}/common.sh"

extra=()
if [[ "${SPOT:-0}" == "1" ]]; then
  extra+=(--spot)
fi

gcloud compute tpus tpu-vm create "${TPU_NAME}" \
  --project="${PROJECT}" --zone="${ZONE}" \
  --accelerator-type="${ACCELERATOR_TYPE}" --version="${RUNTIME_VERSION}" \
  "${extra[@]}"

for _ in $(seq 1 60); do
  state="$(gcloud compute tpus tpu-vm describe "${TPU_NAME}" \
    --project="${PROJECT}" --zone="${ZONE}" --format='value(state)')"
  echo "${TPU_NAME}: ${state}"
  if [[ "${state}" == "READY" ]]; then
    exit 0
  fi
  sleep 10
done
echo "error: ${TPU_NAME} is not READY after 10 minutes" >&2
exit 1

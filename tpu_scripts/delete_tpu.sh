#!/usr/bin/env bash
# Delete the TPU VM / pod slice (its disks go with it; checkpoints belong in a bucket).
#
#   tpu_scripts/delete_tpu.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "${here}/common.sh"

gcloud compute tpus tpu-vm delete "${TPU_NAME}" \
  --project="${PROJECT}" --zone="${ZONE}" --quiet

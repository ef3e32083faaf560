#!/usr/bin/env bash
# Settings shared by the TPU scripts; each may be overridden from the environment.
# Sourced by create_tpu.sh, install.sh, run_all.sh and delete_tpu.sh (not run on its own).

: "${TPU_NAME:=jalign-v5p-64}"              # the TPU VM / pod slice name
: "${ZONE:=us-east5-a}"                      # a zone offering the accelerator type
: "${PROJECT:=$(gcloud config get-value project 2>/dev/null)}"
: "${ACCELERATOR_TYPE:=v5p-64}"              # v5p-64: 32 chips on 8 hosts
: "${RUNTIME_VERSION:=v2-alpha-tpuv5}"       # TPU VM software version for v5p
: "${REMOTE_DIR:=jalign}"                    # checkout directory on every host (under ~)
: "${JAX_VERSION:=0.10.2}"                   # must match pyproject.toml's jax pin

if [[ ! "${REMOTE_DIR}" =~ ^[A-Za-z0-9._-]+$ ]]; then
  echo "error: REMOTE_DIR=${REMOTE_DIR@Q}; allowed: one directory name under ~ ([A-Za-z0-9._-])" >&2
  exit 2
fi
if [[ -z "${PROJECT}" ]]; then
  echo "error: no GCP project; set PROJECT or run 'gcloud config set project ID'" >&2
  exit 2
fi

# Run a bash script (one string) on every host of the slice, in parallel, streaming each
# host's output; fails if it fails on any host.
tpu_ssh_all() {
  gcloud compute tpus tpu-vm ssh "${TPU_NAME}" \
    --project="${PROJECT}" --zone="${ZONE}" --worker=all \
    --command="bash -c $(printf '%q' "$1")"
}

#!/usr/bin/env bash
# Install this checkout of jalign on every host of the slice: copy the committed tree (git
# archive of HEAD) to ~/$REMOTE_DIR on each host, make a virtual environment there and install
# jalign with JAX for TPU. Run it again after committing changes to update every host.
#
#   tpu_scripts/install.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "${here}/common.sh"
repo="$(git -C "${here}/.." rev-parse --show-toplevel)"

archive="$(mktemp -d)/jalign.tar.gz"
git -C "${repo}" archive --format=tar.gz --output="${archive}" HEAD
echo "copying $(git -C "${repo}" rev-parse --short HEAD) to every host of ${TPU_NAME}"
gcloud compute tpus tpu-vm scp "${archive}" "${TPU_NAME}:jalign.tar.gz" \
  --project="${PROJECT}" --zone="${ZONE}" --worker=all
rm -f "${archive}"

# Expanded here: REMOTE_DIR and JAX_VERSION; escaped (\$) parts expand on each host.
tpu_ssh_all "$(cat <<REMOTE
set -euo pipefail
rm -rf ~/${REMOTE_DIR}
mkdir -p ~/${REMOTE_DIR}
tar -xzf ~/jalign.tar.gz -C ~/${REMOTE_DIR}
cd ~/${REMOTE_DIR}
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e . 'jax[tpu]==${JAX_VERSION}' \
  -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
echo "\$(hostname): \$(.venv/bin/python -c 'import jax; print(jax.__version__, jax.local_device_count(), "local devices")')"
REMOTE
)"

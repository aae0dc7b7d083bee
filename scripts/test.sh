#!/usr/bin/env bash
# The test command (README and CI): the whole suite on CPU; GPU-marked tests skip without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"

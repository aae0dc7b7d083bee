#!/usr/bin/env bash
# Create .venv and install retrieval-svc with its test dependencies (CPU torch).
# GPU machines: see README ("Installing on a GPU machine").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Local wheels (the CPU torch build) live in /opt/wheels on our machines.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)
.venv/bin/pip install -q "${FIND_LINKS[@]}" "torch==2.13.0"
.venv/bin/pip install -q "${FIND_LINKS[@]}" -e ".[dev]"

#!/usr/bin/env bash
# Set up a fresh machine: Debian's prometheus (promtool + the server the tests start),
# then .venv with CPU torch and retrieval-svc with the server's and the tests' dependencies.
# GPU machines: see README ("Installing on a GPU machine").
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # policy-rc.d = 101 keeps the package from starting a prometheus daemon;
        # the tests start and stop their own on 127.0.0.1. Remove it only if we made it.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        service prometheus stop >/dev/null 2>&1 || true
        if [ -n "$(trap -p EXIT)" ]; then
            rm -f /usr/sbin/policy-rc.d
            trap - EXIT
        fi
    else
        echo "setup: install Debian's 'prometheus' package (promtool and prometheus) for the tests" >&2
    fi
fi

# Tools with environments of their own -- checkov (.venv-checkov) for the chart's tests, a Milvus
# server (.venv-milvus) for the store conformance suite, buf (.tools/) for scripts/lint.sh -- install
# beside .venv: pip spends much of its time waiting on downloads. Stopped if this script fails.
bash scripts/tools.sh checkov milvus buf &
TOOLS=$!
trap 'kill "$TOOLS" 2>/dev/null || true' EXIT

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# CPU torch first, pinned: any other torch requirement pulls GBs of CUDA wheels.
# Our machines keep the CPU wheel in /opt/wheels.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)
.venv/bin/pip install -q --disable-pip-version-check "${FIND_LINKS[@]}" "torch==2.13.0"
.venv/bin/pip install -q --disable-pip-version-check "${FIND_LINKS[@]}" -e ".[server,dev]"

# helm (.venv/bin/helm) for the Helm chart's tests (tests/helm); checkov, the Milvus server and buf
# (scripts/tools.sh) went in beside .venv, above.
bash scripts/tools.sh helm
wait "$TOOLS"
trap - EXIT

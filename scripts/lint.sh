#!/usr/bin/env bash
# Static checks (README and CI): ruff, then mypy, both configured in pyproject.toml.
# Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
# mypy checks [tool.mypy] files (retrieval_svc, chunkers) and loadtest/ where the checkout has it;
# paths given here replace that list, so it is repeated.
if [ -d loadtest ]; then
    .venv/bin/mypy retrieval_svc chunkers loadtest || status=1
else
    .venv/bin/mypy || status=1
fi
exit $status

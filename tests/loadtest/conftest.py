"""Fixtures for the load generator's tests: the repository root on sys.path (loadtest/
is not an installed package) and the `start_server` fixture of tests/retrieval_svc."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# --import-mode=importlib gives each conftest its own scope, so borrow the fixture by loading
# that conftest as a module (it also puts tests/retrieval_svc, with corpus.py, on sys.path).
_spec = importlib.util.spec_from_file_location(
    "retrieval_svc_server_fixtures", REPO / "tests" / "retrieval_svc" / "conftest.py")
_server_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_server_fixtures)

start_server = _server_fixtures.start_server

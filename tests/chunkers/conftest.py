"""Makes chunker_docs.py (synthetic documents and edits) importable from the chunker tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

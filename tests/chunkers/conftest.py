"""Import set-up for the chunker tests.

Puts this folder on sys.path (for chunker_docs.py: synthetic documents and
edits) and the repository root ahead of site-packages: an editable install made
while chunkers/ had no __init__.py maps `chunkers` to a namespace package, which
hides chunkers/__init__.py (re-running `pip install -e .` fixes the install).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

"""Benchmarks: scripts, not timed tests. Run from the repo root: python -m bench.<name>."""

import sys
from pathlib import Path

# The benchmarks bring up the tests' loopback bed (tests/testbed.py and its helpers).
_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

"""Shared fixtures: a real test bed of fake hosts, and git origins.

The helpers in tests/ (testbed.py, gitorigin.py) are imported as plain
modules (`from testbed import ...`), so put tests/ on sys.path.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gitorigin import make_origin
from testbed import TestBed, start_testbed


@pytest.fixture(scope="session")
def testbed(tmp_path_factory) -> Iterator[TestBed]:
    """Three fake hosts (h1..h3), started once per session.

    Never skipped: if the bed cannot start, every test using it errors with
    the reason.
    """
    bed = start_testbed(3, tmp_path_factory.mktemp("testbed"))
    yield bed
    bed.close()


@pytest.fixture
def bed(testbed: TestBed) -> TestBed:
    """The session's bed, made clean for this test."""
    testbed.reset()
    return testbed


@pytest.fixture
def origin(tmp_path):
    return make_origin(tmp_path)

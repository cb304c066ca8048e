"""Shared fixtures: a real test bed of fake hosts, and git origins; the test tiers.

The helpers in tests/ (testbed.py, gitorigin.py, fakehost.py) are imported as plain
modules (`from testbed import ...`), so put tests/ on sys.path.

Two tiers (markers in pyproject.toml):

- ``bed``: needs the real bed (root, OpenSSH sshd and a supervisord per fake host).
  Marked here, never by hand: every test that uses the ``testbed`` or ``bed`` fixture,
  directly or through another fixture, and every test of a module that starts a bed
  of its own (it imports ``start_testbed``).
- the rest, ``pytest -m "not bed"``: no root, no sshd. Engine promises are tested
  there on scripted hosts (tests/fakehost.py).
"""

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gitorigin import make_origin
from testbed import TestBed, start_testbed

# `python -m relconsole` in a test's subprocess runs the tree under test, wherever the
# subprocess's working directory is and whichever copy pip installed.
PROJECT = str(Path(__file__).parent.parent)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [PROJECT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

BED_FIXTURES = {"testbed", "bed"}


def needs_bed(item: pytest.Item) -> bool:
    if BED_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    return getattr(module, "start_testbed", None) is start_testbed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if needs_bed(item):
            item.add_marker(pytest.mark.bed)


def pytest_unconfigure(config: pytest.Config) -> None:
    # The interpreter's last collection would walk every object the session made (about
    # a second after the console's snapshot tests) only for the OS to free it anyway.
    gc.freeze()


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


@pytest.fixture
def setup(bed, origin, tmp_path):
    """(config, poller) over the bed's three hosts, polling every 0.3 s: what the
    process view's tests host a ProcessScreen on."""
    from deployconfig import write_config

    from relconsole.config import load_config
    from relconsole.status.poller import StatusPoller

    path = write_config(
        tmp_path, bed, origin.url, settings={"poll_interval": 0.3, "connect_timeout": 3}
    )
    config = load_config(path)
    poller = StatusPoller(list(config.hosts.values()), config.settings)
    yield config, poller
    poller.close()

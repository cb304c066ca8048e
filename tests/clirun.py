"""Running ``python -m relconsole`` as a user would, for the tests that drive the CLI.

One helper for every test module: the tree under test reaches the subprocess through
conftest's PYTHONPATH, output is captured as text, and a run that hangs fails the test
after ``timeout`` instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence


def cli(
    *args: str, prefix: Sequence[str] = (), timeout: float = 120, **kwargs
) -> subprocess.CompletedProcess:
    """``relconsole ARGS`` (after ``prefix``, e.g. a namespace or a user switch); other
    keyword arguments (env, cwd, input, stdin) go to :func:`subprocess.run`."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "relconsole", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )

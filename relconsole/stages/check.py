"""The check stage: configured commands run locally in the checkout, one after another.

Each check runs in its own process group so that a timeout or a cancel kills it
with everything it started (a test runner's workers, say), not just the shell.
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from relconsole.config import Check
from relconsole.hosts.local_command import end_group
from relconsole.text import LineSplitter

# After SIGTERM, how long a check gets to clean up before SIGKILL.
_KILL_GRACE = 3.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    exit_code: Optional[int]
    seconds: float
    timed_out: bool = False
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    def describe(self) -> str:
        if self.cancelled:
            return f"check '{self.name}' cancelled"
        if self.timed_out:
            return f"check '{self.name}' timed out after {self.seconds:.0f}s and was killed"
        return f"check '{self.name}' failed with exit code {self.exit_code}"


def _stream_lines(fd: int, emit: Callable[[str], None]) -> None:
    """Whole lines from ``fd`` to ``emit`` as they come; a megabyte-long line without a
    newline costs linear time and is cut (see :class:`~relconsole.text.LineSplitter`)."""
    lines = LineSplitter(emit)
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    while chunk := os.read(fd, 65536):
        lines.write(decode(chunk))
    lines.write(decode(b"", final=True))
    lines.flush_partial()


def run_check(
    check: Check,
    cwd: Path,
    env: Mapping[str, str],
    emit: Callable[[str], None],
    cancel: threading.Event,
) -> CheckResult:
    """Run one check, streaming each output line to ``emit`` as soon as it is printed."""
    started = time.monotonic()
    proc = subprocess.Popen(
        check.run,
        shell=True,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stop = threading.Event()
    why: list[str] = []

    def watchdog() -> None:
        # Wake on cancel or timeout, whichever comes first; `stop` ends the watch.
        deadline = started + check.timeout
        while not stop.is_set():
            if cancel.is_set():
                why.append("cancelled")
            elif time.monotonic() >= deadline:
                why.append("timeout")
            else:
                stop.wait(0.1)
                continue
            end_group(proc, _KILL_GRACE)
            return

    watcher = threading.Thread(target=watchdog, name=f"check-{check.name}", daemon=True)
    watcher.start()
    try:
        assert proc.stdout is not None
        _stream_lines(proc.stdout.fileno(), emit)
        proc.wait()
    finally:
        stop.set()
        watcher.join()
        if proc.poll() is None:
            end_group(proc, _KILL_GRACE)
    # The shell may be gone while children it left behind still run: end the group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return CheckResult(
        check.name,
        proc.returncode,
        time.monotonic() - started,
        timed_out="timeout" in why,
        cancelled="cancelled" in why,
    )

"""One command of a local host, on relconsole's own loop: the local twin of
:mod:`relconsole.hosts.ssh_command`.

The command runs in a session of its own, so a timeout or a stop ends its whole
process group (a setup command's children too), not just the shell; its output is
read from both pipes as it comes and handed over as whole lines.
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from relconsole.errors import Cancelled
from relconsole.hosts.base import CommandTimedOut, LineCallback, Result, Stop
from relconsole.text import LineSplitter

#: How long the group gets between TERM and KILL.
_GRACE = 0.5
_CHUNK = 65536


def run_local(
    host: str,
    command: str,
    timeout: float,
    on_line: Optional[LineCallback] = None,
    stdin: Optional[bytes] = None,
    stop: Optional[Stop] = None,
    cwd: Optional[Path] = None,
) -> Result:
    """Run ``command`` with ``sh`` on this machine (as ``Transport.run`` promises), in
    ``cwd`` (default: this process's)."""
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        ["sh", "-c", command],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except OSError:  # it did not read it all: its exit status says why
            pass
    texts: dict[int, list[str]] = {out_fd: [], err_fd: []}
    names = {out_fd: "out", err_fd: "err"}
    decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace").decode for fd in texts}
    splitters = {fd: _splitter(on_line, names[fd]) for fd in texts}
    open_fds = list(texts)

    def take(fd: int, chunk: bytes, final: bool = False) -> None:
        text = decoders[fd](chunk, final)
        if text:
            texts[fd].append(text)
            splitter = splitters[fd]
            if splitter is not None:
                splitter.write(text)

    try:
        while open_fds:
            if stop is not None and stop.is_set():
                end_group(proc)
                raise Cancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                end_group(proc)
                raise CommandTimedOut(host, f"timed out after {timeout:g}s: {command}")
            for fd in select.select(open_fds, [], [], min(left, 0.1))[0]:
                chunk = os.read(fd, _CHUNK)
                if chunk:
                    take(fd, chunk)
                else:
                    open_fds.remove(fd)
        code = proc.wait()
    finally:
        for fd, splitter in splitters.items():
            take(fd, b"", final=True)
            if splitter is not None:
                splitter.flush_partial()
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:
            end_group(proc)
    return Result(command, code, "".join(texts[out_fd]), "".join(texts[err_fd]))


def _splitter(on_line: Optional[LineCallback], stream: str) -> Optional[LineSplitter]:
    if on_line is None:
        return None
    return LineSplitter(lambda line: on_line(line, stream))


def end_group(proc: subprocess.Popen, grace: float = _GRACE) -> None:
    """TERM the process group of ``proc`` (a session leader), KILL it ``grace`` seconds
    later if its leader is still there."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue

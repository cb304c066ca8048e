"""One shell command on this machine, on relconsole's own loop: what
:mod:`relconsole.hosts.ssh_command` is to a remote host, for local hosts.

The command runs in a session of its own, so a timeout or a cancel ends its whole
process group (TERM, then KILL a moment later) and not just the shell: a local host
behaves as a remote one does. stdout and stderr are read as they come, split into
whole lines for the caller and kept whole for the result.
"""

from __future__ import annotations

import codecs
import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Optional

from relconsole.errors import Cancelled
from relconsole.hosts.base import CommandTimedOut, LineCallback, Result
from relconsole.text import LineSplitter

#: How long the group gets between TERM and KILL (as on a remote host).
GRACE = 0.5
_CHUNK = 65536


def run_local(
    host: str,
    command: str,
    *,
    timeout: float,
    on_line: Optional[LineCallback] = None,
    cancel: Optional[threading.Event] = None,
    cwd: Optional[str] = None,
    stdin: Optional[bytes] = None,
) -> Result:
    """Run ``command`` with ``sh -c``; raises :class:`CommandTimedOut` after ``timeout``
    seconds and :class:`Cancelled` once ``cancel`` is set, its process group ended."""
    proc = subprocess.Popen(
        ["sh", "-c", command],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )
    if stdin and proc.stdin is not None:
        try:  # small inputs (a fake host's put); a big one would need the loop below
            proc.stdin.write(stdin)
        except BrokenPipeError:
            pass
        proc.stdin.close()
    deadline = time.monotonic() + timeout
    texts: dict[str, list[str]] = {"out": [], "err": []}
    decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in texts}
    splitters = {name: _splitter(on_line, name) for name in texts}
    assert proc.stdout is not None and proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        try:
            while sel.get_map():
                if cancel is not None and cancel.is_set():
                    _end(proc)
                    raise Cancelled()
                left = deadline - time.monotonic()
                if left <= 0:
                    _end(proc)
                    raise CommandTimedOut(host, f"timed out after {timeout:g}s: {command}")
                for key, _ in sel.select(min(left, 0.1)):
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    _take(key.data, decoders, texts, splitters, chunk, final=not chunk)
        finally:
            proc.stdout.close()
            proc.stderr.close()
    for splitter in splitters.values():
        if splitter is not None:
            splitter.flush_partial()
    code = _wait(proc, deadline, cancel, host, command, timeout)
    return Result(command, code, "".join(texts["out"]), "".join(texts["err"]))


def _splitter(on_line: Optional[LineCallback], stream: str) -> Optional[LineSplitter]:
    if on_line is None:
        return None
    return LineSplitter(lambda line: on_line(line, stream))


def _take(name, decoders, texts, splitters, chunk: bytes, final: bool) -> None:
    text = decoders[name].decode(chunk, final=final)
    if text:
        texts[name].append(text)
        splitter = splitters[name]
        if splitter is not None:
            splitter.write(text)


def _wait(
    proc: subprocess.Popen,
    deadline: float,
    cancel: Optional[threading.Event],
    host: str,
    command: str,
    timeout: float,
) -> int:
    """The exit status, once the shell has gone (its output is closed already)."""
    while True:
        try:
            return proc.wait(0.1)
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                _end(proc)
                raise Cancelled() from None
            if time.monotonic() > deadline:
                _end(proc)
                raise CommandTimedOut(host, f"timed out after {timeout:g}s: {command}") from None


def _end(proc: subprocess.Popen) -> None:
    """TERM the command's process group; a moment later, KILL what is left of it (the
    shell may be gone while its children are not)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(GRACE)
        except subprocess.TimeoutExpired:
            pass

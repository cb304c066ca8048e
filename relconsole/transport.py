"""What every host transport offers the engine, and the errors it raises.

A transport is one open connection to one host, used by one thread at a time and
reused by every step of a build. Two implementations: :mod:`relconsole.ssh` (Fabric
over OpenSSH-compatible servers) and, for sandboxes, a local one.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional, Protocol

LineCallback = Callable[[str, str], None]  # (line, stream) where stream is "out" or "err"

# What sudo prints when -n stops it from asking for a password.
_SUDO_PASSWORD_MARKERS = ("a password is required", "a terminal is required")


class TransportError(Exception):
    """A host could not do what was asked. ``str()`` names the host and the step."""

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class HostUnreachable(TransportError):
    """Could not connect or authenticate, or the connection dropped."""


class HostKeyRefused(HostUnreachable):
    """The host's key is unknown or differs from known_hosts."""


class CommandTimedOut(TransportError):
    """A command ran longer than its timeout; the channel was closed on it."""


@dataclass(frozen=True)
class Result:
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 10) -> str:
        """The last lines of output, stderr first: what an operator needs to read."""
        text = (self.stderr.strip() + "\n" + self.stdout.strip()).strip()
        return "\n".join(text.splitlines()[-lines:])


class CommandFailed(TransportError):
    def __init__(self, host: str, step: str, result: Result):
        detail = result.tail(5) or "no output"
        if sudo_wants_password(result):
            detail = ("sudo -n refused: it wants a password. Allow this user passwordless sudo "
                      "(NOPASSWD) for these commands, or set sudo = false for this host")
        super().__init__(host, f"{step} failed (exit {result.exit_code}): {detail}")
        self.step = step
        self.result = result


def sudo_wants_password(result: Result) -> bool:
    text = result.stderr + result.stdout
    return result.exit_code != 0 and "sudo" in text and any(m in text for m in _SUDO_PASSWORD_MARKERS)


def run_step(t: "Transport", command: str, step: str, *, timeout: float,
             on_line: Optional[LineCallback] = None, sudo: bool = False) -> Result:
    """``t.run`` for one named step: a timeout names the step and the setting, not the
    (long, quoted) command line."""
    try:
        return t.run(command, timeout=timeout, on_line=on_line, sudo=sudo)
    except CommandTimedOut:
        raise CommandTimedOut(t.name, f"{step} timed out after {timeout:g}s "
                                      "(settings.command_timeout)") from None


def as_root(command: str, sudo: bool) -> str:
    """Wrap a shell command so it runs through ``sudo -n`` on hosts configured so.

    ``-n`` makes sudo fail at once instead of waiting for a password nobody will type.
    """
    if not sudo:
        return command
    return "sudo -n -- sh -c " + shlex.quote(command)


class Transport(Protocol):
    """One connection to one host."""

    name: str

    def run(self, command: str, *, timeout: float, on_line: Optional[LineCallback] = None,
            sudo: bool = False) -> Result:
        """Run a shell command, streaming whole lines to ``on_line`` as they arrive.

        Never raises for a non-zero exit (look at ``Result.exit_code``); raises
        :class:`CommandTimedOut` or :class:`HostUnreachable`.
        """

    def run_with_input(self, command: str, data: BinaryIO, *, timeout: float,
                       sudo: bool = False, cancel=None) -> Result:
        """Run a command with ``data`` streamed to its stdin (one tar stream, say);
        raises Cancelled when ``cancel`` is set before the data is all sent."""

    def path(self, remote_path: str) -> str:
        """Where ``remote_path`` really lives on this host (local hosts prefix a root)."""

    def close(self) -> None: ...


def invoke_run(run: Callable, host: str, command: str, timeout: float,
               on_line: Optional[LineCallback]) -> Result:
    """Run ``command`` with an Invoke-style ``run`` (Fabric's or Invoke's local one).

    Output goes to ``on_line`` as whole lines, never to ``sys.stdout`` (which Textual
    owns while the app runs); stdin is closed; a non-zero exit is a result, not an error.
    """
    import invoke

    out = LineSplitter(lambda line: on_line(line, "out")) if on_line else None
    err = LineSplitter(lambda line: on_line(line, "err")) if on_line else None
    try:
        # hide only when nobody listens: Invoke would write to sys.stdout otherwise.
        res = run(command, warn=True, pty=False, in_stream=False, timeout=timeout,
                  hide=on_line is None, out_stream=out, err_stream=err)
    except invoke.CommandTimedOut:
        raise CommandTimedOut(host, f"timed out after {timeout:g}s: {command}") from None
    finally:
        for splitter in (out, err):
            if splitter:
                splitter.flush_partial()
    return Result(command, res.exited, res.stdout, res.stderr)


def open_transport(host, settings) -> Transport:
    """Connect to ``host`` the way its config says: SSH, or a local root folder.

    Imports are deferred so ``--help`` and config errors never pay for paramiko.
    """
    if host.is_local:
        from .local import connect_local

        return connect_local(host, settings)
    from .ssh import connect

    return connect(host, settings)


class LineSplitter:
    """A file-like sink that turns arbitrary chunks into whole lines.

    Invoke and paramiko hand over chunks that are not line-aligned; front ends want
    lines. ``flush_partial`` emits a last line that has no newline.
    """

    def __init__(self, emit: Callable[[str], None]):
        self._emit = emit
        self._pending = ""

    def write(self, chunk: str) -> int:
        if not chunk:
            return 0
        text = self._pending + chunk
        lines = text.split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._emit(line.rstrip("\r"))
        return len(chunk)

    def flush(self) -> None:
        """File-like API: Invoke calls it after each write; lines are only emitted whole."""

    def flush_partial(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            self._emit(line.rstrip("\r"))

"""What every host transport offers the engine, and the errors it raises.

A transport is one open connection to one host, used by one thread at a time and
reused by every step of a run. :class:`Transport` is the one base every
implementation derives from: :mod:`relconsole.hosts.ssh` (Fabric/paramiko over
OpenSSH servers) and :mod:`relconsole.hosts.local` (a folder on this machine standing
in for ``/``, for sandboxes). This module knows no implementation;
:mod:`relconsole.hosts.connect` picks one for a host.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Optional

from relconsole.errors import RelconsoleError

if TYPE_CHECKING:
    import threading

    from relconsole.config import Host

LineCallback = Callable[[str, str], None]  # (line, stream) where stream is "out" or "err"

# What sudo prints when -n stops it from asking for a password.
_SUDO_PASSWORD_MARKERS = ("a password is required", "a terminal is required")


class TransportError(RelconsoleError):
    """A host could not do what was asked. ``str()`` names the host and the step."""

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class HostUnreachable(TransportError):
    """Could not connect or authenticate, or the connection dropped.

    ``hop`` names the hop of the host's route that failed when it is known (a jump
    host, or the host itself); the message names it too.
    """

    def __init__(self, host: str, message: str, hop: Optional[str] = None):
        super().__init__(host, message)
        self.hop = hop


class HostKeyRefused(HostUnreachable):
    """A hop's key is unknown, revoked, or differs from known_hosts."""


class LoginRefused(HostUnreachable):
    """A hop answered and its key is known, but it did not let us log in."""


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
            detail = (
                "sudo -n refused: it wants a password. Allow this user passwordless sudo "
                "(NOPASSWD) for these commands, or set sudo = false for this host"
            )
        super().__init__(host, f"{step} failed (exit {result.exit_code}): {detail}")
        self.step = step
        self.result = result


def sudo_wants_password(result: Result) -> bool:
    text = result.stderr + result.stdout
    return (
        result.exit_code != 0 and "sudo" in text and any(m in text for m in _SUDO_PASSWORD_MARKERS)
    )


def run_step(
    t: Transport,
    command: str,
    step: str,
    *,
    timeout: float,
    on_line: Optional[LineCallback] = None,
    sudo: bool = False,
) -> Result:
    """``t.run`` for one named step: a timeout names the step and the setting, not the
    (long, quoted) command line."""
    try:
        return t.run(command, timeout=timeout, on_line=on_line, sudo=sudo)
    except CommandTimedOut:
        raise CommandTimedOut(
            t.name, f"{step} timed out after {timeout:g}s (settings.command_timeout)"
        ) from None


def as_root(command: str, sudo: bool) -> str:
    """Wrap a shell command so it runs through ``sudo -n`` on hosts configured so.

    ``-n`` makes sudo fail at once instead of waiting for a password nobody will type.
    """
    if not sudo:
        return command
    return "sudo -n -- sh -c " + shlex.quote(command)


class Channel(ABC):
    """A long-lived command on a host (stderr merged into stdout), talked to in bytes:
    the status helper lives on one beside the connection's other commands."""

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Write to the command's stdin; a closed channel swallows it (the next
        :meth:`recv` finds the end and says so)."""

    @abstractmethod
    def recv(self, timeout: float) -> bytes:
        """The next bytes of output, ``b""`` at its end; raises ``socket.timeout``."""

    @abstractmethod
    def close(self) -> None:
        """End the channel (the command sees the end of its stdin)."""


class Transport(ABC):
    """One connection to one host. Not thread-safe: one thread uses it at a time."""

    name: str
    host: Host

    @property
    def label(self) -> str:
        """How the connection is shown: ``user@host:port``, with the jump hosts."""
        return self.host.label

    def sudo_wrap(self, command: str, sudo: bool) -> str:
        """``command`` through ``sudo -n`` when asked and the host is configured so."""
        return as_root(command, sudo and self.host.sudo)

    @abstractmethod
    def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: Optional[LineCallback] = None,
        sudo: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        """Run a shell command, streaming whole lines to ``on_line`` as they arrive.

        Never raises for a non-zero exit (look at ``Result.exit_code``); raises
        :class:`CommandTimedOut` or :class:`HostUnreachable`. A timeout, or ``cancel``
        set while it runs (then :class:`~relconsole.errors.Cancelled`), ends the
        command's whole process group on the host, not only its channel.
        """

    @abstractmethod
    def put_stream(
        self,
        command: str,
        data: BinaryIO,
        *,
        timeout: float,
        sudo: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        """Run ``command`` with ``data`` streamed to its stdin (a release as one tar
        stream); raises Cancelled when ``cancel`` is set before the data is all sent."""

    @abstractmethod
    def open_channel(self, command: str, *, timeout: float, sudo: bool = False) -> Channel:
        """Start ``command`` on its own channel and hand it over; the caller closes it."""

    @abstractmethod
    def path(self, remote_path: str) -> str:
        """Where ``remote_path`` really lives on this host (local hosts prefix a root)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; commands still running on it end with it."""

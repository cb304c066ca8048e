"""SSH transport: one Fabric connection per host, host keys checked strictly.

Fabric's default policy silently accepts unknown host keys and loads no known_hosts;
here the configured known_hosts file is loaded and anything not in it is refused
with a message that says how to trust the host.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from collections.abc import Callable
from typing import BinaryIO, Optional

import fabric
import paramiko

from relconsole.config import Host, Settings
from relconsole.errors import Cancelled
from relconsole.hosts.base import (
    Channel,
    CommandTimedOut,
    HostKeyRefused,
    HostUnreachable,
    LineCallback,
    Result,
    Transport,
)
from relconsole.hosts.ssh_command import run_command
from relconsole.hosts.trust import RejectUnknown, UnknownHostKey, known_hosts_name, load_known_hosts
from relconsole.secrets import SecretError, resolve

_UPLOAD_CHUNK = 256 * 1024


def _trust_hint(host: Host) -> str:
    return (
        f"run relconsole --trust {host.name} to see its fingerprint and add it once you "
        "have checked it with the host's owner"
    )


def _waited_for(exc: BaseException, conn: fabric.Connection, out_of_time: bool) -> Optional[str]:
    """What the handshake was waiting for, when a paramiko error is really a timeout.

    paramiko words these variously ("Error reading SSH protocol banner", or, when its
    negotiation wait ends first, "No existing session"), so the clock decides too.
    """
    if not (
        out_of_time or isinstance(exc.__context__, TimeoutError) or "timed out" in str(exc).lower()
    ):
        return None
    transport = conn.client.get_transport()
    if transport is not None and not transport.remote_version:
        return "the SSH banner (the port accepts connections, but no SSH server answers)"
    return "the SSH handshake"


def _connect_error(
    exc: BaseException, host: Host, settings: Settings, conn: fabric.Connection, out_of_time: bool
) -> HostUnreachable:
    """The operator's words for why ``conn.open()`` failed."""
    where = f"{host.address}:{host.port}"
    if isinstance(exc, UnknownHostKey):
        return HostKeyRefused(
            host.name,
            f"host key {exc.key.get_name()} {exc.key.fingerprint} of {known_hosts_name(host)} "
            f"is not in {settings.known_hosts}; refusing to connect. To trust it, "
            + _trust_hint(host),
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRefused(
            host.name,
            f"HOST KEY CHANGED for {known_hosts_name(host)}: {settings.known_hosts} has "
            f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}, the host offered "
            f"{exc.key.get_name()} {exc.key.fingerprint}. This can mean an attack, or a rebuilt "
            f"host. If you know the host was rebuilt, remove the old entry with "
            f"ssh-keygen -R {shlex.quote(known_hosts_name(host))} -f "
            f"{shlex.quote(str(settings.known_hosts))} and trust the new one",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return HostUnreachable(host.name, f"authentication failed as {host.user} on {where}: {exc}")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        reasons = sorted({e.strerror or str(e) for e in exc.errors.values()})
        return HostUnreachable(host.name, f"cannot connect to {where}: {', '.join(reasons)}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return HostUnreachable(
            host.name, f"timed out after {settings.connect_timeout:g}s connecting to {where}"
        )
    waited = _waited_for(exc, conn, out_of_time)
    if waited:
        return HostUnreachable(
            host.name,
            f"timed out after {settings.connect_timeout:g}s waiting for {waited} from {where}",
        )
    return HostUnreachable(
        host.name, f"cannot connect to {where}: {str(exc) or type(exc).__name__}"
    )


def connect(host: Host, settings: Settings) -> SshTransport:
    """Open the one connection a build uses for ``host``. Raises :class:`HostUnreachable`."""
    kwargs: dict[str, object] = {
        "banner_timeout": settings.connect_timeout,
        "auth_timeout": settings.connect_timeout,
        "channel_timeout": settings.connect_timeout,
    }
    if host.key is not None:
        kwargs["key_filename"] = str(host.key)
    if host.key_passphrase:
        try:
            kwargs["passphrase"] = resolve(host.key_passphrase)
        except SecretError as exc:
            raise HostUnreachable(host.name, f"key passphrase: {exc}") from None
    conn = fabric.Connection(
        host.address,
        user=host.user,
        port=host.port,
        connect_timeout=settings.connect_timeout,
        connect_kwargs=kwargs,
        # ~/.ssh/config could silently redirect a host; the relconsole config is the truth.
        config=fabric.Config(overrides={"load_ssh_configs": False}),
    )
    client = conn.client
    client.set_missing_host_key_policy(RejectUnknown())
    load_known_hosts(client, settings.known_hosts)
    started = time.monotonic()
    try:
        conn.open()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        out_of_time = time.monotonic() - started >= settings.connect_timeout
        error = _connect_error(exc, host, settings, conn, out_of_time)
        conn.close()
        raise error from None
    # Notice a dead peer during long idle stretches (the process view polls for hours).
    conn.transport.set_keepalive(15)
    return SshTransport(host, conn)


class SshChannel(Channel):
    """A paramiko exec channel (stderr merged into stdout)."""

    def __init__(self, chan: paramiko.Channel):
        self._chan = chan

    def send(self, data: bytes) -> None:
        try:
            self._chan.sendall(data)
        except OSError:  # closed: the read that follows finds the end and says so
            pass

    def recv(self, timeout: float) -> bytes:
        self._chan.settimeout(timeout)
        return self._chan.recv(65536)  # b"" at the end; socket.timeout

    def close(self) -> None:
        self._chan.close()


class SshTransport(Transport):
    """A host reached over SSH. Not thread-safe: one thread uses it at a time."""

    def __init__(self, host: Host, conn: fabric.Connection):
        self.host = host
        self.name = host.name
        self._conn = conn

    def path(self, remote_path: str) -> str:
        return remote_path

    def _lost(self, why: str = "", ran: bool = True) -> HostUnreachable:
        where = f"{self.host.address}:{self.host.port}"
        if not ran:
            return HostUnreachable(self.name, f"connection to {where} was lost earlier")
        return HostUnreachable(
            self.name,
            f"connection lost to {where}{': ' + why if why else ''} "
            "(whether the command finished on the host is unknown)",
        )

    def _dead(self) -> bool:
        transport = self._conn.transport
        return transport is None or not transport.is_active()

    def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: Optional[LineCallback] = None,
        sudo: bool = False,
    ) -> Result:
        wrapped = self.sudo_wrap(command, sudo)
        if self._dead():  # Fabric would quietly open a new connection: the caller decides
            raise self._lost(ran=False)

        def kill(shell: str) -> None:  # as the command ran: root's processes need sudo
            self._command(self.sudo_wrap(shell, sudo), 10.0, None, lambda _shell: None)

        try:
            res = self._command(wrapped, timeout, on_line, kill)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(str(exc) or type(exc).__name__) from None
        # A channel closed with the connection has no exit status: paramiko says -1.
        if res.exit_code == -1 and self._dead():
            raise self._lost()
        return res

    def _command(
        self,
        command: str,
        timeout: float,
        on_line: Optional[LineCallback],
        kill: Callable[[str], None],
    ) -> Result:
        transport = self._conn.client.get_transport()
        if transport is None:
            raise EOFError("not connected")
        return run_command(transport, self.name, command, timeout, on_line, kill)

    def put_stream(
        self,
        command: str,
        data: BinaryIO,
        *,
        timeout: float,
        sudo: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        """Stream ``data`` into one exec channel: a whole release in one tar, no SFTP.

        ``cancel`` is checked between chunks: closing the channel ends the remote tar
        with a short input, which fails it (and its partial release) on the host.
        """
        command = self.sudo_wrap(command, sudo)
        deadline = time.monotonic() + timeout
        try:
            chan = self._conn.client.get_transport().open_session(timeout=timeout)
            try:
                chan.settimeout(timeout)
                # One stream for both: reading stdout to its end while stderr fills the
                # channel window would deadlock.
                chan.set_combine_stderr(True)
                chan.exec_command(command)
                while chunk := data.read(_UPLOAD_CHUNK):
                    if time.monotonic() > deadline:
                        raise TimeoutError()
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    try:
                        chan.sendall(chunk)
                    except OSError:
                        if chan.exit_status_ready() or chan.closed:
                            break  # the remote side gave up (disk full, say): read why
                        raise
                if not chan.closed:
                    chan.shutdown_write()
                output = chan.makefile("rb").read().decode("utf-8", "replace")
                code = chan.recv_exit_status()
            finally:
                chan.close()
        except TimeoutError:
            raise CommandTimedOut(self.name, f"timed out after {timeout:g}s: {command}") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(str(exc) or type(exc).__name__) from None
        if code == -1 and self._dead():
            raise self._lost()
        return Result(command, code, output, "")

    def open_channel(self, command: str, *, timeout: float, sudo: bool = False) -> SshChannel:
        """Start ``command`` on its own exec channel and hand the channel over, open
        (stderr merged into stdout): for a helper that lives beside this connection's
        other commands. The caller talks to it and closes it."""
        command = self.sudo_wrap(command, sudo)
        transport = self._conn.client.get_transport()
        try:
            if transport is None:
                raise EOFError("not connected")
            chan = transport.open_session(timeout=timeout)
            try:
                chan.set_combine_stderr(True)
                chan.exec_command(command)
            except BaseException:
                chan.close()
                raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostUnreachable(
                self.name, f"connection lost: {str(exc) or type(exc).__name__}"
            ) from None
        return SshChannel(chan)

    def close(self) -> None:
        self._conn.close()

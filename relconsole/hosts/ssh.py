"""SSH transport: one Fabric connection per host, along the host's route.

The connection is opened by :mod:`relconsole.hosts.login` (host key checked against
known_hosts, keys, agent) over what :mod:`relconsole.hosts.gateways` hands it: a
channel through the jump host, a ProxyCommand, or nothing (a TCP connection of its
own). Fabric then runs commands on it; it never reads ssh_config itself.
"""

from __future__ import annotations

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
    HostUnreachable,
    LineCallback,
    Result,
    Transport,
)
from relconsole.hosts.gateways import Gateways
from relconsole.hosts.login import connect_hop
from relconsole.hosts.route import Route
from relconsole.hosts.ssh_command import run_command

_UPLOAD_CHUNK = 256 * 1024


def connect(host: Host, settings: Settings, route: Route, gateways: Gateways) -> SshTransport:
    """Open the one connection a run uses for ``host``, along ``route`` (its jump hosts
    taken from ``gateways``, shared with the run's other hosts). Raises
    :class:`HostUnreachable` naming the hop that failed."""
    target = route.target
    sock = gateways.sock_for(route, host.name)
    conn = fabric.Connection(
        target.hostname,
        user=target.user,
        port=target.port,
        # Relconsole resolved ssh_config itself (hosts/route.py): Fabric must not again.
        config=fabric.Config(overrides={"load_ssh_configs": False}),
        forward_agent=target.forward_agent,
    )
    try:
        connect_hop(conn.client, target, sock, settings, host=host.name, gateway=False)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    # Fabric opens lazily; it finds the client connected and uses it as it is.
    conn.transport = conn.client.get_transport()
    # Notice a dead peer during long idle stretches (the process view polls for hours).
    conn.transport.set_keepalive(15)
    return SshTransport(host, conn, route)


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

    def __init__(self, host: Host, conn: fabric.Connection, route: Route):
        self.host = host
        self.name = host.name
        self.route = route
        self._conn = conn
        #: Called once the connection is closed (a one-off connection's own jump hosts).
        self.after_close: Optional[Callable[[], None]] = None

    @property
    def label(self) -> str:
        target = self.route.target
        via = " → ".join(str(g) for g in self.route.gateways)
        return f"{target.user}@{target.where}" + (f" via {via}" if via else "")

    def path(self, remote_path: str) -> str:
        return remote_path

    def _lost(self, why: str = "", ran: bool = True) -> HostUnreachable:
        where = self.route.target.where
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
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        wrapped = self.sudo_wrap(command, sudo)
        if self._dead():  # Fabric would quietly open a new connection: the caller decides
            raise self._lost(ran=False)

        def kill(shell: str) -> None:  # as the command ran: root's processes need sudo
            self._command(self.sudo_wrap(shell, sudo), 10.0, None, lambda _shell: None)

        try:
            res = self._command(wrapped, timeout, on_line, kill, cancel)
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
        cancel: Optional[threading.Event] = None,
    ) -> Result:
        transport = self._conn.client.get_transport()
        if transport is None:
            raise EOFError("not connected")
        forward = bool(getattr(self._conn, "forward_agent", False))
        return run_command(
            transport, self.name, command, timeout, on_line, kill, forward, cancel=cancel
        )

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
        after, self.after_close = self.after_close, None
        if after is not None:
            after()

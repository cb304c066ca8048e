"""The jump-host connections of one run, shared by every target behind them.

A jump host is one paramiko connection; each target behind it is a ``direct-tcpip``
channel on it, handed to the target's own connection as its socket. Fabric shares a
gateway only when the same gateway object is reused, and a ProxyJump read from
ssh_config makes a new one per target; here one :class:`Gateways` per run (or per
status poller) owns them, keyed by the route up to the jump host, so a build of ten
hosts behind one bastion opens exactly one connection to the bastion.

Threads: targets connect in parallel. The first to need a jump host opens it; the
others wait for that attempt and share its connection, or its error (one refused
bastion is one attempt, not ten). A later call after a failure tries again, so a
long-lived poller recovers when the jump host comes back; a connection found dead is
reopened.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import paramiko

from relconsole.config import Settings
from relconsole.hosts.base import HostUnreachable
from relconsole.hosts.login import connect_hop, proxy_command
from relconsole.hosts.route import Hop, Route


class _Attempt:
    """One attempt at opening a jump host, which other threads may wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.client: Optional[paramiko.SSHClient] = None
        self.error: Optional[HostUnreachable] = None


class Gateways:
    """Open connections to jump hosts, keyed by the hops up to and including each."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._clients: dict[tuple[Hop, ...], paramiko.SSHClient] = {}
        self._attempts: dict[tuple[Hop, ...], _Attempt] = {}
        self._closed = False

    def sock_for(self, route: Route, host: str) -> Any:
        """What ``route``'s target is connected over: None (a TCP connection of its
        own), its ProxyCommand, or a channel through its last jump host (opened, with
        the jump hosts before it, if needed). Raises :class:`HostUnreachable` for
        ``host``, naming the hop that failed."""
        target = route.target
        if not route.gateways:
            if target.proxy_command is None:
                return None
            try:
                return proxy_command(target)
            except (OSError, paramiko.SSHException) as exc:
                raise HostUnreachable(
                    host, f"{target.where}: cannot start its ProxyCommand: {exc}", hop=target.name
                ) from None
        last = route.gateways[-1]
        client = self._client(route.gateways, host)
        transport = client.get_transport()
        try:
            if transport is None:
                raise EOFError("not connected")
            return transport.open_channel(
                "direct-tcpip",
                (target.hostname, target.port),
                ("", 0),
                timeout=target.connect_timeout,
            )
        except paramiko.ChannelException as exc:
            raise HostUnreachable(
                host,
                f"{target.where}: jump host {last} could not connect to it ({exc.text.lower()})",
                hop=target.name,
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._forget(route.gateways, client)
            raise HostUnreachable(
                host,
                f"{last}: connection lost: {str(exc) or type(exc).__name__}",
                hop=last.name,
            ) from None

    def _client(self, hops: tuple[Hop, ...], host: str) -> paramiko.SSHClient:
        with self._lock:
            if self._closed:
                raise HostUnreachable(host, f"{hops[-1]}: the run's connections are closed")
            client = self._clients.get(hops)
            transport = client.get_transport() if client is not None else None
            if client is not None and transport is not None and transport.is_active():
                return client
            if client is not None:  # dropped since: open it again
                del self._clients[hops]
                client.close()
            attempt = self._attempts.get(hops)
            mine = attempt is None
            if attempt is None:
                attempt = self._attempts[hops] = _Attempt()
        if not mine:
            attempt.done.wait()
            if attempt.error is not None:  # the same failure, told for this host
                err = attempt.error
                raise type(err)(host, err.message, hop=err.hop)
            assert attempt.client is not None
            return attempt.client
        try:
            sock = self.sock_for(Route(hops), host)
            client = paramiko.SSHClient()
            connect_hop(client, hops[-1], sock, self.settings, host=host, gateway=True)
            transport = client.get_transport()
            if transport is not None:  # notice a dead jump host during long idle polls
                transport.set_keepalive(15)
            with self._lock:
                self._clients[hops] = client
            attempt.client = client
            return client
        except HostUnreachable as exc:
            attempt.error = exc
            raise
        finally:
            with self._lock:
                self._attempts.pop(hops, None)
            attempt.done.set()

    def _forget(self, hops: tuple[Hop, ...], client: paramiko.SSHClient) -> None:
        with self._lock:
            if self._clients.get(hops) is client:
                del self._clients[hops]
        client.close()

    @property
    def open_count(self) -> int:
        """Jump-host connections open now."""
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """Close every jump-host connection (the targets' channels end with them)."""
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
            self._clients.clear()
        for client in reversed(clients):  # the hops furthest in first
            try:
                client.close()
            except Exception:  # already gone
                pass

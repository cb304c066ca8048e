"""Choosing a transport for a host: SSH along its route, or a local root folder.

The one place that knows every implementation, so :mod:`relconsole.hosts.base` knows
none. Imports of paramiko and Fabric are deferred so ``--help`` and config errors
never pay for them.

A :class:`Dialer` is what a run (or a status poller) connects through: it works out
each host's route once (ssh_config read once) and owns the jump-host connections,
shared by every target behind them, until :meth:`Dialer.close`. It is a
:data:`Connector`, so the engine takes it where it takes any connector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from relconsole.config import Host, Settings
from relconsole.hosts.base import Transport

if TYPE_CHECKING:
    from relconsole.hosts.gateways import Gateways
    from relconsole.hosts.route import Resolver, Route

T = TypeVar("T")

#: Opens a transport to a host; tests and sandboxes pass their own.
Connector = Callable[[Host, Settings], Transport]

#: Runs ``work(transport)`` on a host's open connection, opening it if needed (the
#: status poller's ``on_host``): reads that reuse the connections a console keeps.
OnHost = Callable[[Host, Callable[[Transport], Any]], Any]


class Dialer:
    """Connects hosts along their routes, one connection per jump host; thread-safe.

    Close it when the run (or poller) ends: the jump-host connections close with it.
    The targets' own transports are closed by whoever holds them.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._resolver: Optional[Resolver] = None
        self._routes: dict[Host, Route] = {}
        self._gateways: Optional[Gateways] = None

    @property
    def gateways(self) -> Gateways:
        with self._lock:
            if self._gateways is None:
                from relconsole.hosts.gateways import Gateways

                self._gateways = Gateways(self.settings)
            return self._gateways

    def route(self, host: Host) -> Route:
        """How ``host`` is reached (ssh_config applied). Raises ``RouteError`` (a
        ``ConfigError``) for a ProxyJump loop or a value ssh cannot use."""
        with self._lock:
            route = self._routes.get(host)
            if route is not None:
                return route
            if self._resolver is None:
                from relconsole.hosts.route import Resolver

                self._resolver = Resolver(self.settings)
            route = self._routes[host] = self._resolver.route(host)
            return route

    def find_route(self, name: str, hosts: Iterable[Host]) -> Optional[Route]:
        """The route to the hop called ``name`` on the way to any of ``hosts`` (a jump
        host named only by ProxyJump or ``jump = "user@host"``), or None."""
        for host in hosts:
            if host.is_local:
                continue
            found = self.route(host).upto(name)
            if found is not None:
                return found
        return None

    def __call__(self, host: Host, settings: Settings) -> Transport:
        """Open ``host``'s transport (a :data:`Connector`). Raises ``HostUnreachable``."""
        if host.is_local:
            from relconsole.hosts.local import LocalTransport

            return LocalTransport(host)
        from relconsole.hosts.ssh import connect

        return connect(host, settings, self.route(host), self.gateways)

    def close(self) -> None:
        with self._lock:
            gateways, self._gateways = self._gateways, None
        if gateways is not None:
            gateways.close()


def open_transport(host: Host, settings: Settings) -> Transport:
    """Connect to ``host`` on its own (its jump hosts, if any, opened for it alone and
    closed with it). Runs share jump hosts through a :class:`Dialer` instead."""
    dialer = Dialer(settings)
    try:
        transport = dialer(host, settings)
    except BaseException:
        dialer.close()
        raise
    if hasattr(transport, "after_close"):
        transport.after_close = dialer.close
    else:
        dialer.close()
    return transport


def check_routes(hosts: Iterable[Host], settings: Settings) -> None:
    """Work out every ssh host's route now, so ssh_config problems and ProxyJump loops
    are config errors before anything runs. Raises ``RouteError``."""
    dialer = Dialer(settings)
    for host in hosts:
        if not host.is_local:
            dialer.route(host)

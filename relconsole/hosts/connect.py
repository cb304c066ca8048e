"""Choosing a transport for a host: SSH, or a local root folder.

The one place that knows every implementation, so :mod:`relconsole.hosts.base` knows
none. Imports are deferred so ``--help`` and config errors never pay for paramiko.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from relconsole.config import Host, Settings
from relconsole.hosts.base import Transport

T = TypeVar("T")

#: Opens a transport to a host; tests and sandboxes pass their own.
Connector = Callable[[Host, Settings], Transport]

#: Runs ``work(transport)`` on a host's open connection, opening it if needed (the
#: status poller's ``on_host``): reads that reuse the connections a console keeps.
OnHost = Callable[[Host, Callable[[Transport], Any]], Any]


def open_transport(host: Host, settings: Settings) -> Transport:
    """Connect to ``host`` the way its config says. Raises ``HostUnreachable``."""
    if host.is_local:
        from relconsole.hosts.local import LocalTransport

        return LocalTransport(host)
    from relconsole.hosts.ssh import connect

    return connect(host, settings)

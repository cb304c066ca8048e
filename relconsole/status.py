"""Polling ``supervisorctl status`` on many hosts over connections kept open.

Used once by ``relconsole --status`` and every few seconds by the process view. Hosts
are polled in parallel; a host that cannot be reached gets an error instead of rows
and is reconnected on the next poll, so one dead host never stalls the others.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, TypeVar

from . import supervisor as sv
from .config import Host, Service, Settings
from .deployed import Deployed, read_deployed
from .remote import Connector
from .supervise import status_rows
from .transport import (CommandTimedOut, HostUnreachable, Transport, TransportError,
                        open_transport)

T = TypeVar("T")


@dataclass(frozen=True)
class HostStatus:
    host: str
    rows: tuple[sv.ProcessStatus, ...] = ()
    error: Optional[str] = None
    seconds: float = 0.0

    @property
    def reachable(self) -> bool:
        return self.error is None


class StatusPoller:
    """Keeps one connection per host; each host is used by one thread at a time."""

    def __init__(self, hosts: Sequence[Host], settings: Settings,
                 connector: Connector = open_transport):
        self.hosts = list(hosts)
        self.settings = settings
        self._connector = connector
        self._transports: dict[str, Transport] = {}
        self._locks = {h.name: threading.Lock() for h in self.hosts}
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.hosts)),
                                        thread_name_prefix="poll")

    def on_host(self, host: Host, work: Callable[[Transport], T]) -> T:
        """Run ``work`` with the host's connection, opening it if needed.

        A lost or wedged connection is dropped so the next call reconnects.
        """
        with self._locks[host.name]:
            t = self._transports.get(host.name)
            if t is None:
                t = self._transports[host.name] = self._connector(host, self.settings)
            try:
                return work(t)
            except (HostUnreachable, CommandTimedOut):
                self._drop(host.name)
                raise

    def _drop(self, name: str) -> None:
        t = self._transports.pop(name, None)
        if t is not None:
            try:
                t.close()
            except Exception:  # the connection is already gone; nothing to save
                pass

    def poll_host(self, host: Host) -> HostStatus:
        started = time.monotonic()
        timeout = self.settings.connect_timeout
        try:
            rows = self.on_host(host, lambda t: status_rows(t, host, timeout))
        except TransportError as exc:
            return HostStatus(host.name, error=exc.message, seconds=time.monotonic() - started)
        return HostStatus(host.name, tuple(rows), seconds=time.monotonic() - started)

    def poll(self) -> list[HostStatus]:
        """One status of every host, in the configured order; never raises for a host."""
        return list(self._pool.map(self.poll_host, self.hosts))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for name in list(self._transports):
            self._drop(name)


def fleet_rows(poller: StatusPoller, services: Sequence[Service]) -> list[dict]:
    """One poll as rows (``--status``): a row per host × process, with the release and
    sha of the service the program belongs to and whether that host drifted; an
    unreachable host gets one row with state UNREACHABLE."""
    statuses = poller.poll()
    releases: dict[tuple[str, str], Deployed] = {}  # (host, program) -> deployed
    for service in services:
        hosts = [h for h in poller.hosts if h.name in service.hosts]
        for d in read_deployed(service, hosts, poller.on_host, poller.settings.connect_timeout):
            for program in service.programs:
                releases[(d.host, program)] = d
    rows = []
    for st in statuses:
        if st.error is not None:
            rows.append({"host": st.host, "program": None, "state": "UNREACHABLE", "pid": None,
                         "uptime": None, "description": st.error})
        for r in st.rows:
            row = {"host": st.host, "program": r.name, "state": r.state.value, "pid": r.pid,
                   "uptime": r.uptime, "description": r.description}
            deployed = next((d for (host, program), d in releases.items()
                             if host == st.host and r.belongs_to(program)), None)
            if deployed is not None:
                row.update(release=deployed.release, sha=deployed.sha, drift=deployed.drift)
            rows.append(row)
    return rows

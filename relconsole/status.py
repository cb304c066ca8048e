"""Polling supervisor's process status on many hosts over connections kept open.

Used once by ``relconsole --status`` and every few seconds by the process view. Hosts
are polled in parallel; a host that cannot be reached gets an error instead of rows
and is reconnected on the next poll, so one dead host never stalls the others.

Each connection first tries the fast path (:mod:`relconsole.fastpoll`: a helper kept
running on the host asks supervisord directly, ~2 ms instead of ~100 ms of
``supervisorctl`` start-up) and polls with ``supervisorctl status``, the path that
always works, when the helper cannot run there. That choice holds for the connection:
a reconnect tries the fast path again.
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
from .status_reader import StatusReader
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
    """Keeps one connection per host; each host is used by one thread at a time.

    ``fast=False`` polls with ``supervisorctl status`` only.
    """

    def __init__(self, hosts: Sequence[Host], settings: Settings,
                 connector: Connector = open_transport, *, fast: bool = True):
        self.hosts = list(hosts)
        self.settings = settings
        self._connector = connector
        self._fast_enabled = fast
        self._transports: dict[str, Transport] = {}
        # How each host's current connection reads status (fast path or supervisorctl).
        self._readers: dict[str, StatusReader] = {}
        # How each host's last poll was answered: "fast" or "supervisorctl".
        self._via: dict[str, str] = {}
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
        reader = self._readers.pop(name, None)
        if reader is not None:
            reader.close()
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
            rows = self.on_host(host, lambda t: self._rows(t, host, timeout))
        except TransportError as exc:
            return HostStatus(host.name, error=exc.message, seconds=time.monotonic() - started)
        return HostStatus(host.name, tuple(rows), seconds=time.monotonic() - started)

    def _rows(self, t: Transport, host: Host, timeout: float) -> list[sv.ProcessStatus]:
        reader = self._readers.get(host.name)
        if reader is None or reader.transport is not t:
            if reader is not None:
                reader.close()
            reader = self._readers[host.name] = StatusReader(t, host, fast=self._fast_enabled)
        rows = reader.rows(timeout)
        self._via[host.name] = reader.via
        return rows

    def via(self, host_name: str) -> Optional[str]:
        """How the host's last answered poll was answered: ``"fast"`` (the helper) or
        ``"supervisorctl"``; None before any answer."""
        return self._via.get(host_name)

    def fast_path_off(self, host_name: str) -> Optional[str]:
        """Why the host's current connection polls with supervisorctl, if it does."""
        if not self._fast_enabled:
            return "the fast path is turned off"
        reader = self._readers.get(host_name)
        return reader.off if reader is not None else None

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

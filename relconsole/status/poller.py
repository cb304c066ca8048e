"""Polling supervisor's process status on many hosts over connections kept open.

Used once by ``relconsole --status`` and every few seconds by the process view. Hosts
are polled in parallel (at most ``max_parallel`` at once); a host that cannot be
reached gets an error instead of rows and is reconnected on the next poll, so one dead
host never stalls the others.

Each connection first tries the fast path (:mod:`relconsole.status.fastpath`: a helper kept
running on the host asks supervisord directly, ~2 ms instead of ~100 ms of
``supervisorctl`` start-up) and polls with ``supervisorctl status``, the path that
always works, when the helper cannot run there. That choice holds for the connection:
a reconnect tries the fast path again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Optional, TypeVar

from relconsole.config import Host, Settings
from relconsole.fanout import HostResults, Outcome, attempt, host_pool
from relconsole.hosts.base import CommandTimedOut, HostUnreachable, Transport
from relconsole.hosts.connect import Connector, Dialer
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import LogChunk
from relconsole.status.reader import StatusReader

T = TypeVar("T")


class HostStatus(Outcome[tuple[sv.ProcessStatus, ...]]):
    """One host's answer to a poll: its processes, or why there are none."""

    @classmethod
    def answered(
        cls, host: str, rows: Sequence[sv.ProcessStatus], seconds: float = 0.0
    ) -> HostStatus:
        return cls(host, True, value=tuple(rows), seconds=seconds)

    @classmethod
    def unreachable(cls, host: str, error: str, seconds: float = 0.0) -> HostStatus:
        return cls(host, False, error=error, seconds=seconds)

    @property
    def rows(self) -> tuple[sv.ProcessStatus, ...]:
        return self.value or ()

    @property
    def reachable(self) -> bool:
        return self.ok


class StatusPoller:
    """Keeps one connection per host; each host is used by one thread at a time.

    ``fast=False`` polls with ``supervisorctl status`` only.
    """

    def __init__(
        self,
        hosts: Sequence[Host],
        settings: Settings,
        connector: Optional[Connector] = None,
        *,
        fast: bool = True,
    ):
        self.hosts = list(hosts)
        self.settings = settings
        #: The poller's own :class:`Dialer` when no connector is given: its jump-host
        #: connections live as long as the poller. Runs may share it (``connector=``).
        self.dialer: Optional[Dialer] = Dialer(settings) if connector is None else None
        self.connector: Connector = connector or self.dialer  # type: ignore[assignment]
        self._connector = self.connector
        self._fast_enabled = fast
        self._transports: dict[str, Transport] = {}
        # How each host's current connection reads status (fast path or supervisorctl).
        self._readers: dict[str, StatusReader] = {}
        # How each host's last poll was answered: "fast" or "supervisorctl".
        self._via: dict[str, str] = {}
        self._locks = {h.name: threading.Lock() for h in self.hosts}
        self._pool = host_pool(len(self.hosts), settings.max_parallel, "poll")

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
        """One status of ``host``; never raises (the error is the answer)."""
        timeout = self.settings.connect_timeout
        got = attempt(host.name, lambda: self.on_host(host, lambda t: self._rows(t, host, timeout)))
        if got.ok:
            return HostStatus.answered(host.name, got.value or (), got.seconds)
        return HostStatus.unreachable(host.name, got.error or "failed", got.seconds)

    def _reader(self, t: Transport, host: Host) -> StatusReader:
        reader = self._readers.get(host.name)
        if reader is None or reader.transport is not t:
            if reader is not None:
                reader.close()
            reader = self._readers[host.name] = StatusReader(t, host, fast=self._fast_enabled)
        return reader

    def follow_log(self, host: Host, name: str, stream: str, offset: int, limit: int) -> LogChunk:
        """``name``'s ``stream`` log on ``host`` from byte ``offset`` (see
        ``FastPath.tail``), over the host's kept connection and helper. Raises
        ``Unavailable`` where the helper does not run (then ``supervisorctl tail``)."""
        timeout = self.settings.connect_timeout
        return self.on_host(
            host, lambda t: self._reader(t, host).tail(name, stream, offset, limit, timeout)
        )

    def _rows(self, t: Transport, host: Host, timeout: float) -> list[sv.ProcessStatus]:
        reader = self._reader(t, host)
        rows = reader.rows(timeout)
        if reader.via is not None:
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

    def poll(self) -> HostResults[HostStatus]:
        """One status of every host (:class:`HostStatus` each), in the configured order;
        never raises for a host."""
        return HostResults(self._pool.map(self.poll_host, self.hosts))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for name in list(self._transports):
            self._drop(name)
        if self.dialer is not None:
            self.dialer.close()

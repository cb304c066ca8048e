"""What the process view knows between polls: restarts seen, last changes, log tails.

Pure code, stdlib only: no Textual, no I/O. The process view feeds it every host's
latest :class:`~relconsole.status.HostStatus`; it answers with one :class:`FleetRow`
per host and program, in the order the hosts were given.

A *restart* is a program whose pid changed from one real pid to another, even with
polls in between that showed no pid (STARTING, BACKOFF, STOPPED): supervisor bringing
a program back after ``kill -9``, someone's ``supervisorctl restart``, a deploy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from relconsole.status.poller import HostStatus

UNREACHABLE = "UNREACHABLE"
NO_PROGRAMS = "NO PROGRAMS"


@dataclass(frozen=True)
class FleetRow:
    """One line of the process view.

    ``program`` is None for a host-level row: an unreachable host (``state`` is
    ``UNREACHABLE``, ``description`` the reason) or a host whose supervisord runs
    nothing (``NO_PROGRAMS``). Times are the ``now`` values given to
    :meth:`FleetTracker.update`.
    """

    host: str
    program: Optional[str]
    state: str  # a supervisor State value, UNREACHABLE or NO_PROGRAMS
    pid: Optional[int] = None
    uptime: Optional[int] = None
    description: str = ""
    restarts: int = 0
    last_change: Optional[float] = None  # None: not seen changing, age unknown
    restarted_at: Optional[float] = None  # when the last restart was noticed

    @property
    def key(self) -> str:
        """``"h1:api"``, ``"h1:workers:worker_00"``; ``"h1"`` for a host-level row
        (host names never contain ``:``)."""
        return self.host if self.program is None else f"{self.host}:{self.program}"


@dataclass
class _Seen:
    state: str
    pid: Optional[int]  # the last real pid seen, kept through pid-less states
    restarts: int = 0
    last_change: Optional[float] = None
    restarted_at: Optional[float] = None


@dataclass
class _HostMemory:
    programs: dict[str, _Seen] = field(default_factory=dict)
    down_since: Optional[float] = None


class FleetTracker:
    """Turns successive fleet snapshots into rows with restart counts."""

    def __init__(self) -> None:
        self._hosts: dict[str, _HostMemory] = {}

    def update(self, statuses: Iterable[HostStatus], now: float) -> list[FleetRow]:
        """Take the latest status of every host; return the rows to show.

        Hosts missing from ``statuses`` are forgotten. An unreachable host keeps its
        programs' memory, so restart counts survive an outage and a pid that changed
        meanwhile counts as a restart when the host is back.
        """
        statuses = list(statuses)
        self._hosts = {s.host: self._hosts.get(s.host) or _HostMemory() for s in statuses}
        rows: list[FleetRow] = []
        for status in statuses:
            memory = self._hosts[status.host]
            if not status.reachable:
                if memory.down_since is None:
                    memory.down_since = now
                rows.append(
                    FleetRow(
                        status.host,
                        None,
                        UNREACHABLE,
                        description=status.error or "",
                        last_change=memory.down_since,
                    )
                )
                continue
            memory.down_since = None
            rows.extend(self._programs(status, memory, now))
        return rows

    @staticmethod
    def _programs(status: HostStatus, memory: _HostMemory, now: float) -> list[FleetRow]:
        seen_now: dict[str, _Seen] = {}
        rows = []
        for proc in status.rows:
            state = proc.state.value
            seen = memory.programs.get(proc.name)
            if seen is None:
                # First sight: a running program has been in its state for its uptime.
                since = now - proc.uptime if proc.uptime is not None else None
                seen = _Seen(state, proc.pid, last_change=since)
            else:
                if proc.pid is not None and seen.pid is not None and proc.pid != seen.pid:
                    seen.restarts += 1
                    seen.restarted_at = now
                    seen.last_change = now
                if state != seen.state:
                    seen.state = state
                    seen.last_change = now
                if proc.pid is not None:
                    seen.pid = proc.pid
            seen_now[proc.name] = seen
            rows.append(
                FleetRow(
                    status.host,
                    proc.name,
                    state,
                    proc.pid,
                    proc.uptime,
                    proc.description,
                    seen.restarts,
                    seen.last_change,
                    seen.restarted_at,
                )
            )
        if not rows:
            # Shown as such, but remembered: an ssh channel cut mid-command also
            # answers with empty output, and the programs are back on the next poll.
            return [
                FleetRow(status.host, None, NO_PROGRAMS, description="supervisord runs no programs")
            ]
        memory.programs = seen_now  # programs gone from supervisord are forgotten
        return rows


def new_log_text(shown: str, fetched: str) -> str:
    """The part of ``fetched`` (the last bytes of a log) not already in ``shown``.

    ``supervisorctl tail -N`` gives a window on the end of the log. The new part is
    what follows the longest end of ``shown`` that ``fetched`` starts with. When they
    do not overlap (the log grew by more than the window, or was rotated) all of
    ``fetched`` is new. A log that only repeats identical lines is ambiguous; this
    errs towards showing nothing twice.
    """
    if not fetched:
        return ""
    first = fetched[0]
    at = shown.find(first, max(0, len(shown) - len(fetched)))
    while at >= 0:
        if shown.startswith(fetched[: len(shown) - at], at):
            return fetched[len(shown) - at :]
        at = shown.find(first, at + 1)
    return fetched

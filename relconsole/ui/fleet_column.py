"""The main screen's left column: the services, the selected one's hosts, and what is
not deployed yet. It owns the fleet reads and their polling.

A poll runs in a thread worker: every host's status from the app's one
``StatusPoller``, then the deploy locks, the history's last runs and what the selected
service's hosts run. The next poll is armed only once that worker has answered, and
only while the main screen is on top (else when it comes back). What the reads learn
goes into the app's :class:`~relconsole.ui.fleet_facts.FleetFacts` before it is shown.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Optional

from textual import on, work
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable

from relconsole.config import Config
from relconsole.deployed import Deployed, read_deployed
from relconsole.errors import RelconsoleError
from relconsole.history import History, last_runs
from relconsole.lock import ServiceLock, local_locks, remote_locks
from relconsole.status.poller import HostStatus, StatusPoller
from relconsole.ui.console import Console
from relconsole.ui.host_list import HostList
from relconsole.ui.pending_list import PendingList
from relconsole.ui.run_state import RunState
from relconsole.ui.services_table import ServiceTable


class HostsPolled(Message):
    """A poll of every host finished (``statuses`` is None if the poll itself broke)."""

    def __init__(self, statuses: Optional[list[HostStatus]]) -> None:
        super().__init__()
        self.statuses = statuses


class FleetRead(Message):
    """What a poll read besides status; the poll is over when this arrives."""

    def __init__(
        self,
        locks: Optional[dict[str, ServiceLock]],
        last: Optional[dict[str, dict]],
        service: Optional[str],
        deployed: Optional[list[Deployed]],
        end_of_poll: bool = True,
        last_read_at: float = 0.0,
    ) -> None:
        super().__init__()
        self.end_of_poll = end_of_poll
        self.locks = locks
        self.last = last
        #: When the history read for ``last`` began (time.monotonic()).
        self.last_read_at = last_read_at
        self.service = service
        self.deployed = deployed


class DeployedRead(Message):
    def __init__(self, service: str, deployed: list[Deployed]) -> None:
        super().__init__()
        self.service = service
        self.deployed = deployed


def read_locks(
    config: Config, poller: StatusPoller, busy: Optional[str], reachable: set[str]
) -> dict[str, ServiceLock]:
    """Locks this process does not hold: this machine's, then those on ``reachable``."""
    locks = local_locks(config, skip=[busy] if busy else ())
    hosts = [h for h in poller.hosts if h.name in reachable]
    for name, lock in remote_locks(
        config, hosts, poller.on_host, config.settings.connect_timeout
    ).items():
        if name != busy:
            locks.setdefault(name, lock)
    return locks


def read_last_runs(config: Config) -> dict[str, dict]:
    """Each service's newest recorded run. Raises what SQLite or the disk raise."""
    # Opened and closed in the caller's thread: a connection shared with the UI thread
    # could be closed at exit under a query still running (SQLite crashes).
    history = History(config.settings.state_dir)
    try:
        return last_runs(history, config.services)
    finally:
        history.close()


class FleetColumn(Vertical):
    app: Console

    class ServiceSelected(Message):
        """The operator moved to another service (the build panel follows)."""

        def __init__(self, service: str) -> None:
            super().__init__()
            self.service = service

    class LocksRead(Message):
        """The deploy locks were read again (``app.fleet.locks``)."""

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.selected: Optional[str] = None
        #: The branch field's valid value, for the selected service's pending list.
        self.branch: Optional[str] = None
        self._poll_waiting = False  # a poll came due while another screen was on top
        self._history_error: Optional[str] = None

    def compose(self):
        yield ServiceTable(list(self.app.config.services.values()), id="services")
        yield HostList(id="hosts")
        yield PendingList(id="pending")

    def on_mount(self) -> None:
        self.query_one("#services").border_title = "relconsole · services"
        self.query_one("#pending").border_title = "not deployed"
        first = next(iter(self.app.config.services), None)
        if first:
            self.select_service(first)
        self.read_history_and_locks(remote=False)
        self.poll_hosts()

    @property
    def table(self) -> ServiceTable:
        return self.query_one(ServiceTable)

    @property
    def pending_list(self) -> PendingList:
        return self.query_one(PendingList)

    # -- the selection ----------------------------------------------------------
    def select_service(self, name: str) -> None:
        """Make ``name`` the selected service (table cursor, hosts, pending list)."""
        if self.table.selected != name:
            self.table.select(name)
        if name == self.selected:
            return
        self.selected, self.branch = name, None
        self.query_one("#hosts").border_title = f"hosts of {name}"
        self.show_hosts()
        self.pending_list.follow(name)
        self.post_message(self.ServiceSelected(name))
        self.read_deployed_in_thread(name)

    @on(DataTable.RowHighlighted, "#services")
    def follow_service_cursor(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self.select_service(event.row_key.value)

    def show_hosts(self) -> None:
        service = self.app.config.services.get(self.selected or "")
        facts = self.app.fleet
        if service is None:
            self.query_one(HostList).show((), facts.statuses)
            return
        self.query_one(HostList).show(
            service.hosts,
            facts.statuses,
            service.programs,
            facts.deployed.get(service.name),
            facts.locks.get(service.name),
            self.routes(service.hosts),
        )

    def routes(self, names: Sequence[str]) -> dict[str, str]:
        """ "via bastion (198.18.0.2:22)" for each host reached through jump hosts."""
        dialer = self.app.poller.dialer
        if dialer is None:  # an injected connector: routes are its business
            return {}
        found = {}
        for name in names:
            try:
                gateways = dialer.route(self.app.config.hosts[name]).gateways
            except (RelconsoleError, KeyError):  # said when the host is polled
                continue
            if gateways:
                found[name] = "via " + " → ".join(str(hop) for hop in gateways)
        return found

    def follow_branch(self, branch: Optional[str]) -> None:
        """The branch field changed (``branch``: its value if valid)."""
        self.branch = branch
        if self.selected:
            self.refresh_pending(self.selected)

    def refresh_pending(self, name: str, force: bool = False) -> None:
        branch = (self.branch if name == self.selected else None) or self.app.config.services[
            name
        ].branch
        self.pending_list.refresh_list(name, branch, force)

    def fetch(self) -> None:
        """Read again what the hosts run and fetch the branch for the pending list."""
        if self.selected:
            self.pending_list.forget(self.selected)
            self.pending_list.show_waiting("fetching…")
            self.read_deployed_in_thread(self.selected)

    # -- runs -------------------------------------------------------------------
    def show_running(self, run: RunState) -> None:
        if run.action != "run":  # a command deploys nothing: the last deploy stands
            self.table.show_running(run.service)

    def run_ended(self, run: RunState) -> None:
        """What changed: the last run, the locks, what the hosts run, the pending list."""
        assert run.finished is not None
        if run.action != "run":
            self.table.show_result(run.finished, run.action)
        self.read_history_and_locks()
        if run.service == self.selected:
            self.pending_list.forget(run.service)
            self.read_deployed_in_thread(run.service)

    def unlock_answered(self, service: str, ok: bool) -> None:
        if ok:  # the app forgot the lock
            self.table.show_lock(service, False)
            self.show_hosts()
            self.post_message(self.LocksRead())
        self.read_history_and_locks()

    # -- polling ----------------------------------------------------------------
    def poll_hosts(self) -> None:
        if not self.screen.is_active:  # the process view (or a dialog) is on top: wait
            self._poll_waiting = True
            return
        self._poll_waiting = False
        run = self.app.active_run
        self.poll_in_thread(self.selected, run.service if run else None)

    def resume_polls(self) -> None:
        """The main screen is on top again."""
        if self._poll_waiting:
            self.poll_hosts()

    def read_last_runs(self) -> Optional[dict[str, dict]]:
        try:
            return read_last_runs(self.app.config)
        except Exception as exc:  # sqlite3.Error, OSError: builds still work; say it once
            if self._history_error is None:
                self._history_error = str(exc)
                self.app.call_from_thread(
                    self.notify, f"cannot read the history: {exc}", severity="warning", markup=False
                )
            return None

    @work(thread=True, group="history", exit_on_error=False)
    def read_history_and_locks(self, remote: bool = True) -> None:
        """At start (this machine only: no host has answered yet) and after each run or
        unlock: the last runs and the locks."""
        read_at = time.monotonic()
        last = self.read_last_runs()
        reachable = self.app.fleet.reachable() if remote else set()
        try:
            locks = read_locks(self.app.config, self.app.poller, None, reachable)
        except Exception:  # the poller closed under us (exiting)
            locks = None
        self.post_message(
            FleetRead(locks, last, None, None, end_of_poll=False, last_read_at=read_at)
        )

    @work(thread=True, group="poll", exit_on_error=False)
    def poll_in_thread(self, selected: Optional[str], busy: Optional[str]) -> None:
        config, poller = self.app.config, self.app.poller
        locks = last = deployed = None
        read_at = 0.0
        try:
            try:
                statuses: Optional[list[HostStatus]] = list(poller.poll())
            except Exception:  # the poller is closed (app exiting) or broken: keep the UI alive
                statuses = None
            self.post_message(HostsPolled(statuses))
            if statuses is None:
                return
            reachable = {st.host for st in statuses if st.reachable}
            locks = read_locks(config, poller, busy, reachable)
            read_at = time.monotonic()
            last = self.read_last_runs()
            service = config.services.get(selected) if selected else None
            if service is not None:
                hosts = [h for h in config.hosts_of(service) if h.name in reachable]
                deployed = read_deployed(service, hosts, poller.on_host, config.settings)
        except Exception:  # a closed poller at exit, a bug: the next poll tries again
            pass
        finally:
            self.post_message(FleetRead(locks, last, selected, deployed, last_read_at=read_at))

    @on(HostsPolled)
    def show_polled_hosts(self, message: HostsPolled) -> None:
        if message.statuses is not None:
            self.app.fleet.statuses = {st.host: st for st in message.statuses}
            self.show_hosts()

    @on(FleetRead)
    def show_fleet(self, message: FleetRead) -> None:
        if message.locks is not None:
            locks = self.app.fleet.locks = message.locks
            for name in self.app.config.services:
                lock = locks.get(name)
                self.table.show_lock(name, lock is not None, bool(lock and lock.stale))
            self.post_message(self.LocksRead())
        if message.last is not None:
            for name, row in message.last.items():
                self.table.show_last(name, row, message.last_read_at)
        if message.service is not None and message.deployed is not None:
            self.take_deployed(message.service, message.deployed)
        else:
            self.show_hosts()
        if message.end_of_poll:
            selected = self.selected
            if selected and self.pending_list.stale(selected):
                self.refresh_pending(selected, force=True)  # commits pushed meanwhile
            self.set_timer(self.app.config.settings.poll_interval, self.poll_hosts)

    # -- what the hosts run -----------------------------------------------------
    @work(thread=True, group="deployed", exclusive=True, exit_on_error=False)
    def read_deployed_in_thread(self, name: str) -> None:
        config, poller = self.app.config, self.app.poller
        service = config.services[name]
        known = self.app.fleet.statuses
        hosts = [
            h for h in config.hosts_of(service) if h.name not in known or known[h.name].reachable
        ]
        try:
            deployed = read_deployed(service, hosts, poller.on_host, config.settings)
        except Exception:  # the poller closed under us (exiting)
            return
        self.post_message(DeployedRead(name, deployed))

    @on(DeployedRead)
    def show_deployed(self, message: DeployedRead) -> None:
        self.take_deployed(message.service, message.deployed)

    def take_deployed(self, name: str, deployed: list[Deployed]) -> None:
        self.app.fleet.deployed[name] = {d.host: d for d in deployed}
        if name == self.selected:
            self.show_hosts()
            self.refresh_pending(name)

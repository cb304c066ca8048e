"""The main screen: services, their hosts, what is not deployed yet, the Build button
and the live build or rollback.

Threads: a build runs ``run_build`` (a rollback ``run_rollback``) in a thread worker
whose sink only appends events to a deque; a ~30 Hz timer drains it into the widgets
(one ``write_lines`` per pane per tick). Host status comes from the app's one
``StatusPoller``, polled in a thread worker that also reads the deploy locks, the
history's last runs and what the selected service's hosts run; the next poll is
armed only when that worker has finished and only while this screen is on top.
Pending commits need a ``git fetch`` in the service's workspace: their worker runs
when the selection or what the hosts run changes, never during a build of that
service (the build fetches there too).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, DataTable, Footer, Input, Static

from relconsole.config import Service, validate_branch
from relconsole.deployed import Deployed, Pending, deployed_base, read_deployed, read_pending
from relconsole.events import BuildFinished, Event, RunResult
from relconsole.history import History, last_runs
from relconsole.lock import ServiceLock, local_locks, remote_locks
from relconsole.pipeline import force_unlock, run_build, run_rollback
from relconsole.stages.checkout import workspace_path
from relconsole.status.poller import HostStatus
from relconsole.text import printable
from relconsole.ui.build_view import BuildView
from relconsole.ui.dialogs import ConfirmUnlock, RollbackDialog
from relconsole.ui.fleet_list import HostList, PendingList, ServiceTable

if TYPE_CHECKING:
    from relconsole.ui.app import RelconsoleApp

#: Events shown per drain tick at most (~25 ms of work); the rest wait for the next tick.
MAX_BATCH = 20_000
#: Seconds between fetches for the pending list while nothing else changes (f: now).
PENDING_EVERY = 60.0


class BranchValidator(Validator):
    def validate(self, value: str) -> ValidationResult:
        try:
            validate_branch(value.strip())
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


class MainScreen(Screen):
    app: RelconsoleApp

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]

    BINDINGS = [
        Binding("b", "build", "Build"),
        Binding("R,shift+r", "rollback", "Roll back", key_display="R"),
        Binding("h", "history", "History"),
        Binding("f", "fetch", "Fetch"),
        Binding("escape", "cancel_build", "Cancel"),
        *[
            Binding(str(n), f"show_stage({n})", f"stage {n} output", show=False)
            for n in range(1, 7)
        ],
    ]

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
        ) -> None:
            super().__init__()
            self.end_of_poll = end_of_poll
            self.locks = locks
            self.last = last
            self.service = service
            self.deployed = deployed

    class DeployedRead(Message):
        def __init__(self, service: str, deployed: list[Deployed]) -> None:
            super().__init__()
            self.service = service
            self.deployed = deployed

    class PendingRead(Message):
        def __init__(self, service: str, key: tuple, pending: Optional[Pending]) -> None:
            super().__init__()
            self.service = service
            self.key = key
            self.pending = pending  # None: not read (a build holds the workspace)

    class Unlocked(Message):
        def __init__(self, service: str, ok: bool, lines: list[str]) -> None:
            super().__init__()
            self.service = service
            self.ok = ok
            self.lines = lines

    def __init__(self) -> None:
        super().__init__(id="main")
        self.events: deque[Event] = deque()
        self.cancel: Optional[threading.Event] = None
        self.build_running = False
        self.building: Optional[str] = None  # the service being built or rolled back
        self.running_action = "build"
        self.quit_when_finished = False
        self.statuses: dict[str, HostStatus] = {}
        self.selected: Optional[str] = None
        self._poll_waiting = False  # a poll came due while another screen was on top
        self.locks: dict[str, ServiceLock] = {}
        #: service -> host -> what it runs (the last read).
        self.deployed: dict[str, dict[str, Deployed]] = {}
        self.pending: dict[str, Pending] = {}
        #: service -> what its pending list was last read for (branch, base, note).
        self.pending_key: dict[str, tuple] = {}
        self.pending_read_at: dict[str, float] = {}  # time.monotonic() of the last read
        #: Serialises git in a workspace: a pending fetch and a build's checkout.
        self.git_locks: dict[str, threading.Lock] = {}
        self._history_error: Optional[str] = None

    # -- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        config = self.app.config
        with Horizontal(id="body"):
            with Vertical(id="side"):
                yield ServiceTable(list(config.services.values()), id="services")
                yield HostList(id="hosts")
                yield PendingList(id="pending")
            with Vertical(id="work"):
                with Horizontal(id="build-bar"):
                    yield Button("▶ Build", id="build", variant="success")
                    yield Input(
                        id="branch",
                        placeholder="branch",
                        validators=[BranchValidator()],
                        validate_on=["changed", "submitted"],
                    )
                yield Static(id="branch-error", markup=False)
                yield BuildView(id="build-view")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#services").border_title = "relconsole · services"
        self.query_one("#branch").border_title = "branch"
        self.query_one("#pending").border_title = "not deployed"
        self.drain_timer = self.set_interval(1 / 30, self.drain_events, pause=True)
        self.clock_timer = self.set_interval(0.25, self.build_view.tick, pause=True)
        self.pending_timer = None
        first = next(iter(self.app.config.services), None)
        if first:
            self.select_service(first)
        self.query_one(ServiceTable).focus()
        self.read_history_and_locks(remote=False)
        self.poll_hosts()

    @property
    def build_view(self) -> BuildView:
        return self.query_one(BuildView)

    @property
    def service(self) -> Optional[Service]:
        return self.app.config.services.get(self.selected) if self.selected else None

    # -- services and hosts -----------------------------------------------------
    def select_service(self, name: str) -> None:
        """Make ``name`` the selected service (table cursor, hosts, branch field)."""
        table = self.query_one(ServiceTable)
        if table.selected != name:
            table.select(name)
        if name == self.selected:
            return
        self.selected = name
        service = self.app.config.services[name]
        self.query_one("#branch", Input).value = service.branch
        self.show_branch_error(None)
        self.query_one("#hosts").border_title = f"hosts of {name}"
        self.show_hosts()
        self.update_build_button()
        self.show_idle()
        pending = self.pending.get(name)
        if pending is not None:
            self.query_one(PendingList).show(pending)
        else:
            self.query_one(PendingList).show_waiting("reading what the hosts run…")
        self.read_deployed_in_thread(name)

    def show_idle(self) -> None:
        service = self.service
        if service is None or self.build_running:
            return
        lock = self.locks.get(service.name)
        self.build_view.show_idle(
            service.name,
            self.branch_value() or service.branch,
            service.hosts,
            lock.describe() if lock else None,
        )

    @on(DataTable.RowHighlighted, "#services")
    def follow_service_cursor(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self.select_service(event.row_key.value)

    @on(DataTable.RowSelected, "#services")
    def focus_build_button(self) -> None:
        self.query_one("#build", Button).focus()

    def show_hosts(self) -> None:
        service = self.service
        if service is None:
            self.query_one(HostList).show((), self.statuses)
            return
        self.query_one(HostList).show(
            service.hosts,
            self.statuses,
            service.programs,
            self.deployed.get(service.name),
            self.locks.get(service.name),
        )

    def poll_hosts(self) -> None:
        if not self.is_active:  # the process view (or a dialog) is on top: wait for resume
            self._poll_waiting = True
            return
        self._poll_waiting = False
        self.poll_in_thread(self.selected, self.building if self.build_running else None)

    def _read_last_runs(self) -> Optional[dict[str, dict]]:
        # Opened and closed in the worker's own thread: a connection shared with the UI
        # thread could be closed at exit under a query still running (SQLite crashes).
        try:
            history = History(self.app.config.settings.state_dir)
            try:
                return last_runs(history, self.app.config.services)
            finally:
                history.close()
        except Exception as exc:  # sqlite3.Error, OSError: builds still work; say it once
            if self._history_error is None:
                self._history_error = str(exc)
                self.app.call_from_thread(
                    self.notify, f"cannot read the history: {exc}", severity="warning", markup=False
                )
            return None

    def read_locks(self, busy: Optional[str], reachable: set[str]) -> dict[str, ServiceLock]:
        """Locks this process does not hold: this machine's, then those on ``reachable``."""
        config, poller = self.app.config, self.app.poller
        locks = local_locks(config, skip=[busy] if busy else ())
        hosts = [h for h in poller.hosts if h.name in reachable]
        for name, lock in remote_locks(
            config, hosts, poller.on_host, config.settings.connect_timeout
        ).items():
            if name != busy:
                locks.setdefault(name, lock)
        return locks

    @work(thread=True, group="history", exit_on_error=False)
    def read_history_and_locks(self, remote: bool = True) -> None:
        """At start (this machine only: no host has answered yet) and after each run or
        unlock: the last runs and the locks."""
        last = self._read_last_runs()
        reachable = {h for h, st in self.statuses.items() if st.reachable} if remote else set()
        try:
            locks = self.read_locks(None, reachable)
        except Exception:  # the poller closed under us (exiting)
            locks = None
        self.post_message(self.FleetRead(locks, last, None, None, end_of_poll=False))

    @work(thread=True, group="poll", exit_on_error=False)
    def poll_in_thread(self, selected: Optional[str], busy: Optional[str]) -> None:
        config, poller = self.app.config, self.app.poller
        locks = last = deployed = None
        try:
            try:
                statuses = poller.poll()
            except Exception:  # the poller is closed (app exiting) or broken: keep the UI alive
                statuses = None
            self.post_message(self.HostsPolled(statuses))
            if statuses is None:
                return
            reachable = {st.host for st in statuses if st.reachable}
            locks = self.read_locks(busy, reachable)
            last = self._read_last_runs()
            service = config.services.get(selected) if selected else None
            if service is not None:
                hosts = [h for h in config.hosts_of(service) if h.name in reachable]
                deployed = read_deployed(
                    service, hosts, poller.on_host, config.settings.connect_timeout
                )
        except Exception:  # a closed poller at exit, a bug: the next poll tries again
            pass
        finally:
            self.post_message(self.FleetRead(locks, last, selected, deployed))

    @on(HostsPolled)
    def show_polled_hosts(self, message: HostsPolled) -> None:
        if message.statuses is not None:
            self.statuses = {st.host: st for st in message.statuses}
            self.show_hosts()

    @on(FleetRead)
    def show_fleet(self, message: FleetRead) -> None:
        table = self.query_one(ServiceTable)
        if message.locks is not None:
            self.locks = message.locks
            for name in self.app.config.services:
                lock = self.locks.get(name)
                table.show_lock(name, lock is not None, bool(lock and lock.stale))
            self.show_idle()
        if message.last is not None:
            for name, row in message.last.items():
                table.show_last(name, row)
        if message.service is not None and message.deployed is not None:
            self.take_deployed(message.service, message.deployed)
        else:
            self.show_hosts()
        if message.end_of_poll:
            name = self.selected
            if name and time.monotonic() - self.pending_read_at.get(name, 0) > PENDING_EVERY:
                self.refresh_pending(name, force=True)  # commits pushed meanwhile
            self.set_timer(self.app.config.settings.poll_interval, self.poll_hosts)

    def on_screen_resume(self) -> None:
        if self._poll_waiting:
            self.poll_hosts()

    # -- what the hosts run, and what is not deployed yet -------------------------
    @work(thread=True, group="deployed", exclusive=True, exit_on_error=False)
    def read_deployed_in_thread(self, name: str) -> None:
        config, poller = self.app.config, self.app.poller
        service = config.services[name]
        known = self.statuses
        hosts = [
            h for h in config.hosts_of(service) if h.name not in known or known[h.name].reachable
        ]
        try:
            deployed = read_deployed(
                service, hosts, poller.on_host, config.settings.connect_timeout
            )
        except Exception:  # the poller closed under us (exiting)
            return
        self.post_message(self.DeployedRead(name, deployed))

    @on(DeployedRead)
    def show_deployed(self, message: DeployedRead) -> None:
        self.take_deployed(message.service, message.deployed)

    def take_deployed(self, name: str, deployed: list[Deployed]) -> None:
        self.deployed[name] = {d.host: d for d in deployed}
        if name == self.selected:
            self.show_hosts()
            self.refresh_pending(name)

    def branch_value(self) -> Optional[str]:
        try:
            return validate_branch(self.query_one("#branch", Input).value.strip())
        except ValueError:
            return None

    def refresh_pending(self, name: str, force: bool = False) -> None:
        """Read the pending commits again if what they depend on changed (or ``force``)."""
        service = self.app.config.services[name]
        deployed = list(self.deployed.get(name, {}).values())
        if not deployed:
            if name == self.selected and name in self.deployed:
                self.query_one(PendingList).show_waiting(
                    "no host answered: what runs there, and so what is pending, is unknown"
                )
            return
        branch = (self.branch_value() if name == self.selected else None) or service.branch
        base, note = deployed_base(deployed)
        key = (branch, base, note)
        if not force and self.pending_key.get(name) == key:
            return
        if self.build_running and self.building == name:
            self.pending_key.pop(name, None)  # read again after the build
            return
        self.pending_key[name] = key
        self.pending_read_at[name] = time.monotonic()
        if name == self.selected and name not in self.pending:
            self.query_one(PendingList).show_waiting(f"fetching {branch}…")
        self.read_pending_in_thread(name, branch, deployed, key)

    @work(thread=True, group="pending", exclusive=True, exit_on_error=False)
    def read_pending_in_thread(
        self, name: str, branch: str, deployed: list[Deployed], key: tuple
    ) -> None:
        config = self.app.config
        lock = self.git_locks.setdefault(name, threading.Lock())
        # A build holds it until run_build returns, a moment after its end is on screen.
        if not lock.acquire(timeout=5):  # still building: read again after that build
            self.post_message(self.PendingRead(name, key, None))
            return
        try:
            pending = read_pending(
                workspace_path(config.settings.state_dir, name), branch, deployed
            )
        finally:
            lock.release()
        self.post_message(self.PendingRead(name, key, pending))

    @on(PendingRead)
    def show_pending(self, message: PendingRead) -> None:
        if message.pending is None:
            if self.pending_key.get(message.service) == message.key:
                del self.pending_key[message.service]
            return
        self.pending[message.service] = message.pending
        if message.service == self.selected:
            self.query_one(PendingList).show(message.pending)

    def branch_edited(self) -> None:
        if self.selected:
            self.refresh_pending(self.selected)

    # -- building ---------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        if action in ("build", "rollback"):
            return not self.build_running
        if action == "cancel_build":
            return self.build_running
        return True

    async def action_build(self) -> None:
        await self.start_build()

    def action_cancel_build(self) -> None:
        self.cancel_build()

    def action_show_stage(self, number: int) -> None:
        self.build_view.select_stage_number(number)

    def action_fetch(self) -> None:
        """Read again what the hosts run and fetch the branch for the pending list."""
        if self.selected:
            self.pending_key.pop(self.selected, None)
            self.query_one(PendingList).show_waiting("fetching…")
            self.read_deployed_in_thread(self.selected)

    def action_history(self) -> None:
        from relconsole.ui.history_screen import HistoryScreen

        self.app.push_screen(HistoryScreen(self.app.config, self.selected))

    @on(Button.Pressed, "#build")
    async def build_or_cancel(self) -> None:
        if self.build_running:
            self.cancel_build()
        else:
            await self.start_build()

    @on(Input.Submitted, "#branch")
    async def build_from_branch_field(self) -> None:
        await self.start_build()

    @on(Input.Changed, "#branch")
    def follow_branch_field(self, event: Input.Changed) -> None:
        self.show_branch_error(None)
        service = self.service
        if service is not None and not self.build_running:
            lock = self.locks.get(service.name)
            self.build_view.show_idle(
                service.name, event.value.strip(), service.hosts, lock.describe() if lock else None
            )
        # Another branch has other pending commits: read them once typing pauses.
        if self.pending_timer is not None:
            self.pending_timer.stop()
        self.pending_timer = self.set_timer(0.8, self.branch_edited)

    def show_branch_error(self, message: Optional[str]) -> None:
        error = self.query_one("#branch-error", Static)
        error.update(Content(message or ""))
        error.display = bool(message)

    def refuse_while_running(self) -> bool:
        if self.build_running:
            self.notify(
                f"a {self.running_action} of {self.building} is running; esc cancels it",
                severity="warning",
                markup=False,
            )
        return self.build_running

    async def start_build(self, service_name: Optional[str] = None) -> None:
        """Build the selected service (or ``service_name``) from the branch field."""
        if self.refuse_while_running():
            return
        if service_name is not None:
            self.select_service(service_name)
        service = self.service
        if service is None:
            self.notify("no service configured", severity="error")
            return
        branch_input = self.query_one("#branch", Input)
        try:
            branch = validate_branch(branch_input.value.strip())
        except ValueError as exc:
            self.show_branch_error(f"✘ {exc}")
            self.notify(str(exc), title="Not building", severity="error", markup=False)
            branch_input.focus()
            return
        kwargs = {"connector": self.app.connector} if self.app.connector else {}
        git_lock = self.git_locks.setdefault(service.name, threading.Lock())

        def run(sink, cancel) -> BuildFinished:
            with git_lock:  # waits for a pending-commits fetch in the workspace to end
                return run_build(
                    self.app.config,
                    service.name,
                    sink,
                    cancel,
                    branch=branch,
                    trigger="tui",
                    **kwargs,
                )

        await self.begin_run(service, "build", branch, run)

    def action_rollback(self) -> None:
        if self.selected:
            self.ask_rollback(self.selected)

    def ask_rollback(self, name: str) -> None:
        """Ask which release to go back to (the previous one preselected), then roll back."""
        if self.refuse_while_running():
            return
        self.select_service(name)

        async def answered(target: Optional[str]) -> None:
            if target:
                await self.start_rollback(name, target)

        lock = self.locks.get(name)
        self.app.push_screen(
            RollbackDialog(
                self.app.config, name, self.app.poller.on_host, lock.describe() if lock else None
            ),
            answered,
        )

    async def start_rollback(self, name: str, to: Optional[str] = None) -> None:
        """Switch every host of ``name`` back to release ``to`` (None: the previous one)."""
        if self.refuse_while_running():
            return
        service = self.app.config.services[name]
        kwargs = {"connector": self.app.connector} if self.app.connector else {}

        def run(sink, cancel) -> BuildFinished:
            return run_rollback(self.app.config, name, sink, cancel, to=to, trigger="tui", **kwargs)

        await self.begin_run(service, "rollback", service.branch, run)

    async def begin_run(
        self, service: Service, action: str, branch: str, run: Callable[..., BuildFinished]
    ) -> None:
        self.build_running, self.building, self.running_action = True, service.name, action
        self.cancel = threading.Event()
        self.events.clear()
        hosts = [h.name for h in self.app.config.hosts_of(service)]
        self.query_one(ServiceTable).show_running(service.name)
        await self.build_view.begin(service.name, branch, hosts, action)
        self.update_build_button()
        self.drain_timer.resume()
        self.clock_timer.resume()
        self.run_in_thread(service.name, run, self.cancel)

    @work(thread=True, group="build", exit_on_error=False)
    def run_in_thread(
        self, service: str, run: Callable[..., BuildFinished], cancel: threading.Event
    ) -> None:
        try:
            run(self.events.append, cancel)
        except Exception as exc:  # a bug in the engine must still end the run on screen
            self.events.append(
                BuildFinished(
                    result=RunResult.FAILED,
                    seconds=0.0,
                    service=service,
                    error=f"internal error: {type(exc).__name__}: {exc}",
                )
            )

    def cancel_build(self) -> None:
        if not self.build_running or self.cancel is None:
            return
        if not self.cancel.is_set():
            self.cancel.set()
            self.notify(
                f"Cancelling the {self.running_action} of {self.building}…", severity="warning"
            )
        self.update_build_button()

    def drain_events(self) -> None:
        batch: list[Event] = []
        pop = self.events.popleft
        try:
            for _ in range(MAX_BATCH):
                batch.append(pop())
        except IndexError:
            pass
        if batch:
            finished = self.build_view.apply(batch)
            if finished is not None:
                self.finish_build(finished)

    def finish_build(self, event: BuildFinished) -> None:
        action = self.running_action
        self.build_running, self.building = False, None
        self.drain_timer.pause()
        self.clock_timer.pause()
        self.build_view.strip.tick()
        self.query_one(ServiceTable).show_result(event, action)
        self.update_build_button()
        sha = f" {event.sha[:7]}" if event.sha else ""
        if event.ok and action == "rollback":
            self.notify(
                f"{event.service} runs release {event.release} again",
                title="Rolled back",
                markup=False,
            )
        elif event.ok:
            self.notify(
                f"{event.service}{sha} deployed as {event.release}", title="Build OK", markup=False
            )
        elif event.cancelled:
            self.notify(
                f"{event.service} {action} cancelled",
                title=f"{action.title()} cancelled",
                severity="warning",
                markup=False,
            )
        else:
            title = (
                f"{event.service} is locked"
                if event.result is RunResult.LOCKED
                else f"{action.title()} of {event.service} failed"
            )
            self.notify(
                printable(event.error or "unknown error"),
                title=title,
                severity="error",
                markup=False,
            )
        if self.quit_when_finished:
            self.app.exit(0)
            return
        # What changed: the last run, the locks, what the hosts run, the pending list.
        self.read_history_and_locks()
        if event.service == self.selected:
            self.pending_key.pop(event.service, None)
            self.read_deployed_in_thread(event.service)

    def update_build_button(self) -> None:
        # Never disabled while focused widgets may be on it: disabling moves the focus away.
        button = self.query_one("#build", Button)
        if self.build_running:
            cancelling = self.cancel is not None and self.cancel.is_set()
            button.label = "Cancelling…" if cancelling else "■ Cancel"
            button.variant = "warning" if cancelling else "error"
        else:
            button.label = f"▶ Build {self.selected}" if self.selected else "▶ Build"
            button.variant = "success"
            button.disabled = self.selected is None
        self.refresh_bindings()

    # -- the deploy lock --------------------------------------------------------
    def ask_unlock(self, name: str) -> None:
        """Ask, then remove ``name``'s deploy lock on every host (``relconsole --unlock``)."""
        if self.build_running and self.building == name:
            self.notify(
                f"this console is running a {self.running_action} of {name}: cancel "
                "it instead (esc)",
                severity="warning",
                markup=False,
            )
            return
        lock = self.locks.get(name)

        def answered(yes: Optional[bool]) -> None:
            if yes:
                self.notify(f"Removing the deploy lock of {name}…", markup=False)
                self.unlock_in_thread(name)

        self.app.push_screen(ConfirmUnlock(name, lock.describe() if lock else None), answered)

    @work(thread=True, group="unlock", exit_on_error=False)
    def unlock_in_thread(self, name: str) -> None:
        kwargs = {"connector": self.app.connector} if self.app.connector else {}
        try:
            ok, lines = force_unlock(self.app.config, name, trigger="tui", **kwargs)
        except Exception as exc:
            ok, lines = False, [f"internal error: {type(exc).__name__}: {exc}"]
        self.post_message(self.Unlocked(name, ok, lines))

    @on(Unlocked)
    def show_unlocked(self, message: Unlocked) -> None:
        text = "\n".join(printable(line) for line in message.lines) or "done"
        self.notify(
            text,
            title=f"Unlock {message.service}" + ("" if message.ok else " failed"),
            severity="information" if message.ok else "error",
            markup=False,
            timeout=10,
        )
        if message.ok:
            self.locks.pop(message.service, None)
            self.query_one(ServiceTable).show_lock(message.service, False)
            self.show_hosts()
            self.show_idle()
        self.read_history_and_locks()

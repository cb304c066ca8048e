"""The main screen: services, their hosts, the Build button and the live build.

Threads: the build runs ``run_build`` in a thread worker whose sink only appends
events to a deque; a ~30 Hz timer drains it into the widgets (one ``write_lines``
per pane per tick). Host status comes from the app's one ``StatusPoller``, polled
in a thread worker and re-armed only when a poll has finished and only while
this screen is on top.
"""

from __future__ import annotations

import threading
from collections import deque
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

from .build_view import BuildView
from .config import Service, validate_branch
from .events import BuildFinished, Event
from .headless import printable
from .pipeline import run_build
from .status import HostStatus
from .ui_fleet_list import HostList, ServiceTable

if TYPE_CHECKING:
    from .app import RelconsoleApp

#: Events shown per drain tick at most (~25 ms of work); the rest wait for the next tick.
MAX_BATCH = 20_000


class BranchValidator(Validator):
    def validate(self, value: str) -> ValidationResult:
        try:
            validate_branch(value.strip())
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


class MainScreen(Screen):
    app: "RelconsoleApp"

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]

    BINDINGS = [
        Binding("b", "build", "Build"),
        Binding("escape", "cancel_build", "Cancel build"),
        Binding("1", "show_stage('checkout')", "checkout output", show=False),
        Binding("2", "show_stage('check')", "check output", show=False),
        Binding("3", "show_stage('upload')", "upload output", show=False),
        Binding("4", "show_stage('supervisor')", "supervisor output", show=False),
        Binding("5", "show_stage('rollback')", "rollback output", show=False),
    ]

    class HostsPolled(Message):
        """A poll of every host finished (``statuses`` is None if the poll itself broke)."""

        def __init__(self, statuses: Optional[list[HostStatus]]) -> None:
            super().__init__()
            self.statuses = statuses

    def __init__(self) -> None:
        super().__init__(id="main")
        self.events: deque[Event] = deque()
        self.cancel: Optional[threading.Event] = None
        self.build_running = False
        self.building: Optional[str] = None  # the service being built
        self.quit_when_finished = False
        self.statuses: dict[str, HostStatus] = {}
        self.selected: Optional[str] = None
        self._poll_waiting = False  # a poll came due while another screen was on top

    # -- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        config = self.app.config
        with Horizontal(id="body"):
            with Vertical(id="side"):
                yield ServiceTable(list(config.services.values()), id="services")
                yield HostList(id="hosts")
            with Vertical(id="work"):
                with Horizontal(id="build-bar"):
                    yield Button("▶ Build", id="build", variant="success")
                    yield Input(id="branch", placeholder="branch", validators=[BranchValidator()],
                                validate_on=["changed", "submitted"])
                yield Static(id="branch-error", markup=False)
                yield BuildView(id="build-view")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#services").border_title = "relconsole · services"
        self.query_one("#branch").border_title = "branch"
        self.drain_timer = self.set_interval(1 / 30, self.drain_events, pause=True)
        self.clock_timer = self.set_interval(0.25, self.build_view.tick, pause=True)
        first = next(iter(self.app.config.services), None)
        if first:
            self.select_service(first)
        self.query_one(ServiceTable).focus()
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
        self.build_view.show_idle(name, service.branch, service.hosts)

    @on(DataTable.RowHighlighted, "#services")
    def follow_service_cursor(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self.select_service(event.row_key.value)

    @on(DataTable.RowSelected, "#services")
    def focus_build_button(self) -> None:
        self.query_one("#build", Button).focus()

    def show_hosts(self) -> None:
        service = self.service
        self.query_one(HostList).show(service.hosts if service else (), self.statuses,
                                      service.programs if service else ())

    def poll_hosts(self) -> None:
        if not self.is_active:  # the process view (or a dialog) is on top: wait for resume
            self._poll_waiting = True
            return
        self._poll_waiting = False
        self.poll_in_thread()

    @work(thread=True, group="poll", exit_on_error=False)
    def poll_in_thread(self) -> None:
        try:
            statuses = self.app.poller.poll()
        except Exception:  # the poller is closed (app exiting) or broken: keep the UI alive
            statuses = None
        self.post_message(self.HostsPolled(statuses))

    @on(HostsPolled)
    def show_polled_hosts(self, message: HostsPolled) -> None:
        if message.statuses is not None:
            self.statuses = {st.host: st for st in message.statuses}
            self.show_hosts()
        self.set_timer(self.app.config.settings.poll_interval, self.poll_hosts)

    def on_screen_resume(self) -> None:
        if self._poll_waiting:
            self.poll_hosts()

    # -- building ---------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        if action == "build":
            return not self.build_running
        if action == "cancel_build":
            return self.build_running
        return True

    async def action_build(self) -> None:
        await self.start_build()

    def action_cancel_build(self) -> None:
        self.cancel_build()

    def action_show_stage(self, stage: str) -> None:
        if not self.build_view.strip.cell(stage).has_class("-unused"):
            self.build_view.select_stage(stage)

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
            self.build_view.show_idle(service.name, event.value.strip(), service.hosts)

    def show_branch_error(self, message: Optional[str]) -> None:
        error = self.query_one("#branch-error", Static)
        error.update(Content(message or ""))
        error.display = bool(message)

    async def start_build(self, service_name: Optional[str] = None) -> None:
        """Build the selected service (or ``service_name``) from the branch field."""
        if self.build_running:
            self.notify(f"{self.building} is being built; esc cancels it", severity="warning")
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
        self.build_running, self.building = True, service.name
        self.cancel = threading.Event()
        self.events.clear()
        hosts = [h.name for h in self.app.config.hosts_of(service)]
        self.query_one(ServiceTable).show_running(service.name)
        await self.build_view.begin(service.name, branch, hosts)
        self.update_build_button()
        self.drain_timer.resume()
        self.clock_timer.resume()
        self.run_build_in_thread(service.name, branch, self.cancel)

    @work(thread=True, group="build", exit_on_error=False)
    def run_build_in_thread(self, service: str, branch: str, cancel: threading.Event) -> None:
        kwargs = {"connector": self.app.connector} if self.app.connector else {}
        try:
            run_build(self.app.config, service, self.events.append, cancel, branch=branch,
                      trigger="tui", **kwargs)
        except Exception as exc:  # a bug in the engine must still end the build on screen
            self.events.append(BuildFinished(ok=False, seconds=0.0, service=service,
                                             error=f"internal error: {type(exc).__name__}: {exc}"))

    def cancel_build(self) -> None:
        if not self.build_running or self.cancel is None:
            return
        if not self.cancel.is_set():
            self.cancel.set()
            self.notify(f"Cancelling the build of {self.building}…", severity="warning")
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
        self.build_running, self.building = False, None
        self.drain_timer.pause()
        self.clock_timer.pause()
        self.build_view.strip.tick()
        self.query_one(ServiceTable).show_result(event)
        self.update_build_button()
        sha = f" {event.sha[:7]}" if event.sha else ""
        if event.ok:
            self.notify(f"{event.service}{sha} deployed as {event.release}", title="Build OK")
        elif event.cancelled:
            self.notify(f"{event.service} build cancelled", title="Build cancelled",
                        severity="warning")
        else:
            self.notify(printable(event.error or "unknown error"),
                        title=f"Build of {event.service} failed", severity="error",
                        markup=False)
        if self.quit_when_finished:
            self.app.exit(0)

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

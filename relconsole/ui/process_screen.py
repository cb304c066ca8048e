"""The process view: every program on every host, live, with restart/stop/start and logs.

Each host is polled on its own cycle (``StatusPoller.poll_host``) and re-armed only when
its last poll has finished, so polls never pile up and a host that hangs until its
connect timeout never holds back the others' rows. All ssh work runs in a thread pool
owned by the screen (one thread per host plus a few for actions and the log tail);
workers await it, so results are handled on the event loop.

Remote text (descriptions, errors, logs) is shown as plain ``Text``, never as markup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Optional, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Static

from relconsole.config import Config, Host
from relconsole.hosts.base import Result, TransportError
from relconsole.status import supervisorctl as sv
from relconsole.status.poller import HostStatus, StatusPoller
from relconsole.status.tracker import FleetRow, FleetTracker
from relconsole.ui import clock
from relconsole.ui.dialogs import ConfirmStop
from relconsole.ui.process_rows import action_answer, detail_text, fleet_rows, status_line
from relconsole.ui.process_table import ProcessTable
from relconsole.ui.program_tail import ProgramTail

T = TypeVar("T")

POLL_SOON = 0.2  # after an action, the host's next poll comes this soon


class ProcessScreen(Screen[None]):
    """Every supervisor program of every host; restart, stop, start, tail its log."""

    TITLE = "Processes"
    AUTO_FOCUS = "#processes"
    BINDINGS = [
        Binding("r", "act('restart')", "Restart"),
        Binding("s", "stop", "Stop"),
        Binding("S,shift+s", "act('start')", "Start", key_display="S"),
        Binding("l", "tail('stdout')", "Log"),
        Binding("e", "tail('stderr')", "Stderr"),
        # priority: the action must run before the keys typed just after "/" are
        # handed to whatever had focus, so that they land in the filter.
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        # One key, three meanings: check_action enables the one that applies.
        Binding("escape", "close_filter", "Clear", key_display="esc"),
        Binding("escape", "close_tail", "Close", key_display="esc"),
        Binding("escape", "leave", "Back", key_display="esc"),
        Binding("p", "leave", "Back", show=False),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
    ]

    def __init__(self, config: Config, poller: StatusPoller):
        super().__init__()
        self.config = config
        self.poller = poller
        self._hosts = list(poller.hosts)
        self._host = {h.name: h for h in self._hosts}
        self._tracker = FleetTracker()
        self._statuses: dict[str, HostStatus] = {}
        self._polled_at: Optional[float] = None  # wall clock of the latest answer
        self._polling: set[str] = set()
        self._poll_again: set[str] = set()
        self._poll_timers: dict[str, Timer] = {}
        # Polls, actions and the tail: one thread per host plus a few, so a slow host
        # only ever occupies its own thread.
        self._pool = ThreadPoolExecutor(
            max_workers=2 * len(self._hosts) + 2, thread_name_prefix="procview"
        )

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            id="filter", placeholder="filter by host, program or state; enter keeps it, esc clears"
        )
        yield ProcessTable(id="processes")
        yield Static(id="detail")
        timeout = self.config.settings.connect_timeout
        yield ProgramTail(partial(self._run_command, timeout=timeout), id="tail")
        yield Footer()

    def on_mount(self) -> None:
        self.table.rows_known = self._current_rows()
        self._show()
        for host in self._hosts:
            self._poll(host)
        self.set_interval(1.0, self._show)  # ages and restart highlights move on

    def on_resize(self) -> None:
        # Nine bindings and the palette's hint: at 80 columns only a compact footer fits.
        self.query_one(Footer).compact = self.size.width < 100

    def on_unmount(self) -> None:
        for timer in self._poll_timers.values():
            timer.stop()
        # Threads blocked in ssh finish on their own timeouts; nobody waits for them.
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def table(self) -> ProcessTable:
        return self.query_one(ProcessTable)

    @property
    def tail(self) -> ProgramTail:
        return self.query_one(ProgramTail)

    @property
    def _closing_down(self) -> bool:
        # A worker can resume while the app or this screen is being torn down: its
        # widgets may already be gone, and the screen's workers not yet cancelled.
        tables = self.query("#processes")
        return not (self.is_attached and tables and tables.first().is_attached)

    def selected_row(self) -> Optional[FleetRow]:
        return self.table.selected_row()

    # --- polling ----------------------------------------------------------------------
    async def _in_thread(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _run_command(self, host: Host, command: str, timeout: float) -> Result:
        return await self._in_thread(
            self.poller.on_host, host, lambda t: t.run(command, timeout=timeout, sudo=True)
        )

    def _poll(self, host: Host) -> None:
        timer = self._poll_timers.pop(host.name, None)
        if timer is not None:
            timer.stop()
        self._polling.add(host.name)
        self.run_worker(self._poll_host(host), group="poll", name=f"poll {host.name}")

    def _poll_soon(self, host: Host) -> None:
        if host.name in self._polling:
            self._poll_again.add(host.name)
        else:
            self._poll(host)

    async def _poll_host(self, host: Host) -> None:
        try:
            status = await self._in_thread(self.poller.poll_host, host)
        except Exception as exc:  # a bug below must not end this host's polling
            status = HostStatus.unreachable(host.name, f"poll failed: {exc!r}")
        if self._closing_down:
            return
        self._polling.discard(host.name)
        self._statuses[host.name] = status
        self._polled_at = clock.now()
        self.table.rows_known = self._current_rows()
        self._show()
        if host.name in self._poll_again:
            self._poll_again.discard(host.name)
            delay = POLL_SOON
        else:
            delay = self.config.settings.poll_interval
        self._poll_timers[host.name] = self.set_timer(delay, partial(self._poll, host))

    def _current_rows(self) -> list[FleetRow]:
        return fleet_rows(self._hosts, self._statuses, self._tracker, clock.now())

    # --- showing --------------------------------------------------------------------
    def _show(self) -> None:
        if self._closing_down:
            return
        table = self.table
        table.show(clock.now())
        rows = (len(table.visible_rows), len(table.rows_known)) if table.filter.strip() else None
        self.sub_title = status_line(len(self._hosts), self._statuses, self._polled_at, rows)
        self._show_detail()

    def _show_detail(self) -> None:
        detail = detail_text(self.selected_row(), self.table.filter)
        self.query_one("#detail", Static).update(detail)

    @on(ProcessTable.RowHighlighted)
    def _row_moved(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        # False hides a binding (and lets another binding of its key run), None greys it out.
        filter_input = self.query_one("#filter", Input)
        typing = filter_input.has_focus
        if action == "filter":
            return not typing
        if action in ("act", "stop", "tail"):
            if typing:
                return False  # these keys type into the filter
            row = self.selected_row()
            return (row is not None and row.program is not None) or None
        if action == "close_filter":
            return filter_input.display and (typing or not self.tail.is_open)
        if action == "close_tail":
            return self.tail.is_open and not typing
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    def action_cursor(self, direction: str) -> None:
        table = self.table
        (table.action_cursor_down if direction == "down" else table.action_cursor_up)()

    def action_leave(self) -> None:
        self.app.pop_screen()

    # --- actions --------------------------------------------------------------------
    def _program_row(self) -> Optional[tuple[FleetRow, str]]:
        row = self.selected_row()
        if row is None or row.program is None:
            self.notify("Select a program row first.", severity="warning", timeout=3)
            return None
        return row, row.program

    def action_act(self, action: str) -> None:
        found = self._program_row()
        if found is not None:
            self._run_action(*found, action)

    def action_stop(self) -> None:
        found = self._program_row()
        if found is None:
            return
        row, program = found

        def answered(stop: Optional[bool]) -> None:
            if stop:
                self._run_action(row, program, "stop")

        self.app.push_screen(ConfirmStop(row.host, program), answered)

    def _run_action(self, row: FleetRow, program: str, action: str) -> None:
        host = self._host[row.host]
        command = sv.action_command(host.supervisorctl, action, [program])
        self.notify(f"{action} {program} on {row.host}…", timeout=2, markup=False)
        # An app worker: its answer is still shown if the user has left this screen.
        self.app.run_worker(
            self._action(host, program, action, command),
            group="process-action",
            name=f"{action} {row.key}",
        )

    async def _action(self, host: Host, program: str, action: str, command: str) -> None:
        app = self.app
        title = f"{action} {program} on {host.name}"
        try:
            res = await self._run_command(host, command, self.config.settings.command_timeout)
        except Exception as exc:  # a bug must not take the console down mid-incident
            error = exc.message if isinstance(exc, TransportError) else repr(exc)
            app.notify(error, title=f"{title} failed", severity="error", markup=False)
        else:
            message, severity = action_answer(res)
            timeout = 8 if severity == "error" else 4
            app.notify(message, title=title, severity=severity, markup=False, timeout=timeout)
        if not self._closing_down:
            self._poll_soon(host)

    # --- filter ---------------------------------------------------------------------
    def action_filter(self) -> None:
        filter_input = self.query_one("#filter", Input)
        filter_input.display = True
        # At once, not focus()'s call_later: keys typed right after "/" are already queued.
        self.set_focus(filter_input)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.filter = event.value
        self._show()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        if not self.table.filter.strip():
            self.action_close_filter()
        else:
            self.set_focus(self.table)

    def action_close_filter(self) -> None:
        filter_input = self.query_one("#filter", Input)
        filter_input.value = ""
        self.table.filter = ""
        filter_input.display = False
        self.set_focus(self.table)
        self._show()
        self.refresh_bindings()

    # --- log tail -------------------------------------------------------------------
    def action_tail(self, stream: str) -> None:
        found = self._program_row()
        if found is not None:
            row, program = found
            self.tail.open(self._host[row.host], program, stream)
            self.refresh_bindings()

    def action_close_tail(self) -> None:
        self.tail.close()
        self.refresh_bindings()

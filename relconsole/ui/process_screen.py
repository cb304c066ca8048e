"""The process view: every program on every host, live, with restart/stop/start and logs.

Each host is polled on its own cycle (``StatusPoller.poll_host``) and re-armed only when
its last poll has finished, so polls never pile up and a host that hangs until its
connect timeout never holds back the others' rows. All ssh work runs in a thread pool
owned by the screen (one thread per host plus a few for actions and the log tail);
workers await it, so results are handled on the event loop.

At fleet size: rows are marked (space, ``a`` for every visible one) and restart, stop
and start act on the marked ones, one host at a time, stopping at the first host that
fails and saying where. ``/`` filters by text, ``n`` keeps what is not RUNNING, ``g``
groups by service. The log pane follows by byte offset (see
:mod:`relconsole.ui.program_tail`). A read-only console offers no action.

Remote text (descriptions, errors, logs) is shown as plain ``Text``, never as markup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Optional, TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input, Static

from relconsole.config import Config, Host
from relconsole.fanout import host_pool
from relconsole.hosts.base import Result, TransportError
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import LogChunk
from relconsole.status.poller import HostStatus, StatusPoller
from relconsole.status.tracker import FleetRow, FleetTracker
from relconsole.ui import clock
from relconsole.ui.dialogs import ConfirmStop
from relconsole.ui.footer import Footer
from relconsole.ui.process_rows import (
    action_answer,
    detail_text,
    fleet_rows,
    services_of,
    status_line,
)
from relconsole.ui.process_table import ProcessTable
from relconsole.ui.program_tail import ProgramTail

T = TypeVar("T")

POLL_SOON = 0.2  # after an action, the host's next poll comes this soon


class ProcessScreen(Screen[None]):
    """Every supervisor program of every host; restart, stop, start, tail its log."""

    TITLE = "Processes"
    AUTO_FOCUS = "#processes"
    # Below 100 columns the footer leaves out the marking keys, the grouping and "q Quit"
    # (esc leads back to the main screen, which shows it): the rest fit 80 columns whole,
    # and ``?`` lists them all.
    COMPACT_FOOTER_HIDES = frozenset({"mark", "mark_all", "group", "quit"})
    BINDINGS = [
        Binding("r", "act('restart')", "Restart"),
        Binding("s", "stop", "Stop"),
        Binding("S,shift+s", "act('start')", "Start", key_display="S"),
        Binding("space", "mark", "Mark"),
        Binding("a", "mark_all", "Mark all"),
        Binding("u", "unmark", "Unmark all", show=False),
        # priority: the action must run before the keys typed just after "/" are
        # handed to whatever had focus, so that they land in the filter.
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("n", "not_running", "Not running"),
        Binding("g", "group", "By service"),
        Binding("l", "tail('stdout')", "Log"),
        Binding("e", "tail('stderr')", "Stderr", show=False),
        # One key, three meanings: check_action enables the one that applies.
        Binding("escape", "close_filter", "Clear", key_display="esc"),
        Binding("escape", "close_tail", "Close", key_display="esc"),
        Binding("escape", "leave", "Back", key_display="esc"),
        Binding("p", "leave", "Back", show=False),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
    ]

    def __init__(self, config: Config, poller: StatusPoller, *, read_only: bool = False):
        super().__init__()
        self.config = config
        self.poller = poller
        #: No restart, stop or start from here (``--read-only``).
        self.read_only = read_only
        self._hosts = list(poller.hosts)
        self._host = {h.name: h for h in self._hosts}
        self._tracker = FleetTracker()
        self._statuses: dict[str, HostStatus] = {}
        self._polled_at: Optional[float] = None  # wall clock of the latest answer
        #: Whether the cursor's row is a program (the row-dependent keys follow it).
        self._on_program: Optional[bool] = None
        self._polling: set[str] = set()
        self._poll_again: set[str] = set()
        self._poll_timers: dict[str, Timer] = {}
        # Polls: at most max_parallel hosts at once, as every fan-out. Actions and the
        # tail (asked for by the operator) have threads of their own, so they never wait
        # behind the polls of slow hosts.
        self._polls = host_pool(len(self._hosts), config.settings.max_parallel, "procview-poll")
        self._pool = ThreadPoolExecutor(
            max_workers=len(self._hosts) + 2, thread_name_prefix="procview"
        )

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            id="filter", placeholder="filter by host, program or state; enter keeps it, esc clears"
        )
        yield ProcessTable(id="processes")
        yield Static(id="detail")
        timeout = self.config.settings.connect_timeout
        yield ProgramTail(partial(self._run_command, timeout=timeout), self._follow_log, id="tail")
        yield Footer()

    def on_mount(self) -> None:
        if self.read_only:
            self.title = "Processes · READ-ONLY"
        self.table.service_of = services_of(self.config)
        self.table.service_order = list(self.config.services)
        self.table.rows_known = self._current_rows()
        self._show()
        for host in self._hosts:
            self._poll(host)
        self.set_interval(1.0, self._show)  # ages and restart highlights move on

    def on_unmount(self) -> None:
        for timer in self._poll_timers.values():
            timer.stop()
        # Threads blocked in ssh finish on their own timeouts; nobody waits for them.
        self._polls.shutdown(wait=False, cancel_futures=True)
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
    async def _in_thread(self, fn: Callable[..., T], *args, pool: Optional[Executor] = None) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool or self._pool, fn, *args)

    async def _run_command(self, host: Host, command: str, timeout: float) -> Result:
        return await self._in_thread(
            self.poller.on_host, host, lambda t: t.run(command, timeout=timeout, sudo=True)
        )

    async def _follow_log(
        self, host: Host, program: str, stream: str, offset: int, limit: int
    ) -> LogChunk:
        return await self._in_thread(self.poller.follow_log, host, program, stream, offset, limit)

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
            status = await self._in_thread(self.poller.poll_host, host, pool=self._polls)
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
        narrowed = table.filter.strip() or table.not_running
        rows = (len(table.visible_rows), len(table.rows_known)) if narrowed else None
        notes = ["not RUNNING only"] if table.not_running else []
        notes += ["by service"] if table.grouped else []
        marked = len(table.marked_rows())
        self.sub_title = status_line(
            len(self._hosts), self._statuses, self._polled_at, rows, marked, notes
        )
        self._show_detail()

    def _show_detail(self) -> None:
        detail = detail_text(self.selected_row(), self.table.filter)
        marked = len(self.table.marked_rows())
        if marked:
            acts = "" if self.read_only else "r/s/S act on them · "
            detail = Text.assemble(
                (f"● {marked} marked · {acts}u unmarks  ", "bold magenta"), detail
            )
        self.query_one("#detail", Static).update(detail)

    @on(ProcessTable.RowHighlighted)
    def _row_moved(self) -> None:
        self._show_detail()
        # Only when what check_action answers for the row changes: each refresh rebuilds
        # the footer's keys, and a poll can move the cursor row every few seconds.
        row = self.selected_row()
        on_program = row is not None and row.program is not None
        if on_program != self._on_program:
            self._on_program = on_program
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        # False hides a binding (and lets another binding of its key run), None greys it out.
        filter_input = self.query_one("#filter", Input)
        typing = isinstance(self.focused, Input)
        in_tail = self.tail.has_focus_within
        if action == "filter":
            return not typing and not in_tail  # in the log pane, "/" searches it
        if action in ("act", "stop"):
            if typing or self.read_only:
                return False  # these keys type into the filter; read-only: no actions
            row = self.selected_row()
            has_program = row is not None and row.program is not None
            return (has_program or bool(self.table.marked_rows())) or None
        if action == "tail":
            if typing:
                return False
            row = self.selected_row()
            return (row is not None and row.program is not None) or None
        if action in ("mark", "mark_all", "unmark", "not_running", "group"):
            return not typing and not in_tail
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

    def _targets(self) -> Optional[list[FleetRow]]:
        """The marked rows, else the selected program row (None: nothing to act on)."""
        marked = self.table.marked_rows()
        if marked:
            return marked
        found = self._program_row()
        return [found[0]] if found is not None else None

    def action_act(self, action: str) -> None:
        if self.read_only:
            return
        rows = self._targets()
        if rows is not None:
            self._act_on(rows, action)

    def _act_on(self, rows: list[FleetRow], action: str) -> None:
        if len(rows) == 1 and rows[0].program is not None:
            self._run_action(rows[0], rows[0].program, action)
        else:
            self._run_bulk(rows, action)

    def action_stop(self) -> None:
        if self.read_only:
            return
        rows = self._targets()
        if rows is None:
            return
        hosts = {r.host for r in rows}
        what = (
            f"{rows[0].program} on {rows[0].host}"
            if len(rows) == 1
            else f"{len(rows)} programs on {len(hosts)} host(s)"
        )

        def answered(stop: Optional[bool]) -> None:
            if stop:
                self._act_on(rows, "stop")

        self.app.push_screen(ConfirmStop(what), answered)

    # --- marks ----------------------------------------------------------------------
    def action_mark(self) -> None:
        row = self.selected_row()
        if row is None or row.program is None:
            return
        self.table.toggle_mark(row)
        self.table.action_cursor_down()
        self._show()
        self.refresh_bindings()

    def action_mark_all(self) -> None:
        self.table.mark_visible()
        self._show()
        self.refresh_bindings()

    def action_unmark(self) -> None:
        self.table.marked.clear()
        self._show()
        self.refresh_bindings()

    def action_not_running(self) -> None:
        self.table.not_running = not self.table.not_running
        self._show()

    def action_group(self) -> None:
        self.table.grouped = not self.table.grouped
        self._show()

    def _run_bulk(self, rows: list[FleetRow], action: str) -> None:
        by_host: dict[str, list[str]] = {}
        for row in rows:
            if row.program is not None:
                by_host.setdefault(row.host, []).append(row.program)
        count = sum(len(p) for p in by_host.values())
        self.notify(
            f"{action} {count} program(s) on {len(by_host)} host(s), one host at a time…",
            timeout=3,
            markup=False,
        )
        self.app.run_worker(
            self._bulk(by_host, action), group="process-action", name=f"{action} marked"
        )

    async def _bulk(self, by_host: dict[str, list[str]], action: str) -> None:
        """``action`` on every host's marked programs, one host at a time; the first host
        that fails stops it, named with what it said and the hosts left alone."""
        app = self.app
        timeout = self.config.settings.command_timeout
        hosts = list(by_host)
        for done, name in enumerate(hosts):
            host = self._host[name]
            command = sv.action_command(host.supervisorctl, action, by_host[name])
            error = None
            try:
                res = await self._run_command(host, command, timeout)
            except Exception as exc:  # a bug must not take the console down mid-incident
                error = exc.message if isinstance(exc, TransportError) else repr(exc)
            else:
                message, severity = action_answer(res)
                error = message if severity == "error" else None
            if not self._closing_down:
                self._poll_soon(host)
            if error is not None:
                left = hosts[done + 1 :]
                untouched = f"\nnot done: {', '.join(left)}" if left else ""
                app.notify(
                    f"{error}{untouched}",
                    title=f"{action} stopped at {name} ({done} of {len(hosts)} host(s) done)",
                    severity="error",
                    markup=False,
                    timeout=12,
                )
                return
        count = sum(len(p) for p in by_host.values())
        app.notify(
            f"{count} program(s) on {', '.join(hosts)}",
            title=f"{action} done",
            markup=False,
            timeout=4,
        )

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

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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Optional, TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Header, Input, Log, Static

from relconsole.config import Config, Host
from relconsole.hosts.base import Result, TransportError
from relconsole.status import supervisorctl as sv
from relconsole.status.poller import HostStatus, StatusPoller
from relconsole.status.tracker import NO_PROGRAMS, UNREACHABLE, FleetRow, FleetTracker, new_log_text

T = TypeVar("T")

CONNECTING = "CONNECTING"  # a host whose first poll has not answered yet
RESTART_HIGHLIGHT_SECONDS = 5.0
TAIL_INTERVAL = 1.0
TAIL_BYTES = 8000
POLL_SOON = 0.2  # after an action, the host's next poll comes this soon

COLUMNS = (  # key, label
    ("host", "Host"),
    ("program", "Program"),
    ("state", "State"),
    ("pid", "PID"),
    ("uptime", "Uptime"),
    ("restarts", "Restarts"),
    ("changed", "Changed"),
    ("detail", "Detail"),
)

STATE_STYLES = {
    "RUNNING": "bold green",
    "STARTING": "yellow",
    "BACKOFF": "bold yellow",
    "STOPPING": "yellow",
    "STOPPED": "dim",
    "EXITED": "bold red",
    "FATAL": "bold red",
    "UNKNOWN": "bold red",
    UNREACHABLE: "bold red",
    NO_PROGRAMS: "dim",
    CONNECTING: "dim italic",
}

# supervisorctl's answers that mean "nothing to do" rather than failure.
_HARMLESS = ("ERROR (already started)", "ERROR (not running)")


def format_age(seconds: float) -> str:
    """``"4s ago"``, ``"12m ago"``, ``"3h ago"``, ``"2d ago"``."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def render_row(row: FleetRow, now: float) -> tuple[Text, ...]:
    """The cells of one table row, in COLUMNS order."""
    restarted = row.restarted_at is not None and now - row.restarted_at < RESTART_HIGHLIGHT_SECONDS
    pid = Text(
        str(row.pid) if row.pid is not None else "",
        style="bold reverse yellow" if restarted else "",
    )
    restarts = Text(
        str(row.restarts) if row.restarts else "", style="bold yellow" if restarted else "yellow"
    )
    # A running program's description only repeats pid and uptime.
    detail = "" if row.description.startswith("pid ") else row.description
    return (
        Text(row.host, style="bold"),
        Text(row.program or ""),
        Text(row.state, style=STATE_STYLES.get(row.state, "")),
        pid,
        Text(sv.format_uptime(row.uptime)),
        restarts,
        Text(format_age(now - row.last_change) if row.last_change is not None else "", style="dim"),
        Text(" ".join(detail.split()), style="red" if row.program is None else ""),
    )


def _same(a: Text, b: Text) -> bool:
    # Text.__eq__ ignores the base style, and the style is what changes on a highlight.
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


def matches(row: FleetRow, needle: str) -> bool:
    """Whether the filter ``needle`` is in the row's host, program or state."""
    needle = needle.strip().lower()
    return not needle or any(
        needle in field.lower() for field in (row.host, row.program or "", row.state)
    )


@dataclass
class _Tail:
    host: Host
    program: str
    stream: str
    seq: int
    shown: str = ""  # the last window fetched, to diff the next one against
    fetches: int = 0


class ConfirmStop(ModalScreen[bool]):
    """Asks before stopping a program: supervisord will not bring it back by itself."""

    DEFAULT_CSS = """
    ConfirmStop { align: center middle; }
    ConfirmStop > Vertical {
        width: 62; max-width: 100%; height: auto;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmStop #question { text-style: bold; }
    ConfirmStop #why { color: $text-muted; margin-bottom: 1; }
    ConfirmStop Horizontal { height: auto; align: right middle; }
    ConfirmStop Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("n,escape", "answer(False)", "Keep it running"),
    ]
    AUTO_FOCUS = "#no"

    def __init__(self, host: str, program: str):
        super().__init__()
        self.host = host
        self.program = program

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Stop {self.program} on {self.host}?"), id="question")
            yield Static("Supervisor will not start it again until you do (S).", id="why")
            with Horizontal():
                yield Button("Stop (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def action_answer(self, stop: bool) -> None:
        self.dismiss(stop)

    @on(Button.Pressed)
    def answer_button(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


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
        self._rows: list[FleetRow] = []
        self._shown_keys: list[str] = []
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._filter = ""
        self._tail: Optional[_Tail] = None
        self._tail_seq = 0
        # Polls, actions and the tail: one thread per host plus a few, so a slow host
        # only ever occupies its own thread.
        self._pool = ThreadPoolExecutor(
            max_workers=2 * len(self._hosts) + 2, thread_name_prefix="procview"
        )

    # --- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            id="filter", placeholder="filter by host, program or state; enter keeps it, esc clears"
        )
        yield DataTable(id="processes", cursor_type="row", zebra_stripes=True)
        yield Static(id="detail")
        with Vertical(id="tail"):
            yield Log(id="tail-log", max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        table = self.table
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self._rows = self._current_rows()
        self._show()
        for host in self._hosts:
            self._poll(host)
        self.set_interval(1.0, self._show)  # ages and restart highlights move on

    def on_unmount(self) -> None:
        for timer in self._poll_timers.values():
            timer.stop()
        # Threads blocked in ssh finish on their own timeouts; nobody waits for them.
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- polling ----------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

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
        self._polled_at = time.time()
        self._rows = self._current_rows()
        self._show()
        if host.name in self._poll_again:
            self._poll_again.discard(host.name)
            delay = POLL_SOON
        else:
            delay = self.config.settings.poll_interval
        self._poll_timers[host.name] = self.set_timer(delay, partial(self._poll, host))

    def _current_rows(self) -> list[FleetRow]:
        known = [self._statuses[h.name] for h in self._hosts if h.name in self._statuses]
        by_host: dict[str, list[FleetRow]] = {}
        for row in self._tracker.update(known, now=time.time()):
            by_host.setdefault(row.host, []).append(row)
        rows = []
        for host in self._hosts:
            rows += by_host.get(host.name) or [
                FleetRow(host.name, None, CONNECTING, description=f"connecting to {host.label}")
            ]
        return rows

    # --- showing --------------------------------------------------------------------

    @property
    def table(self) -> DataTable:
        return self.query_one("#processes", DataTable)

    @property
    def _closing_down(self) -> bool:
        # A worker can resume while the app or this screen is being torn down: its
        # widgets may already be gone, and the screen's workers not yet cancelled.
        tables = self.query("#processes")
        return not (self.is_attached and tables and tables.first().is_attached)

    def selected_row(self) -> Optional[FleetRow]:
        table = self.table
        if not self._shown_keys or not 0 <= table.cursor_row < len(self._shown_keys):
            return None
        key = self._shown_keys[table.cursor_row]
        return next((r for r in self._rows if r.key == key), None)

    def _show(self) -> None:
        """Bring the table up to date, in place when the same rows are shown."""
        if self._closing_down:
            return
        now = time.time()
        table = self.table
        visible = [r for r in self._rows if matches(r, self._filter)]
        keys = [r.key for r in visible]
        if keys != self._shown_keys:
            selected = self.selected_row()
            old_index = table.cursor_row
            table.clear()
            self._cells = {}
            for row in visible:
                cells = self._cells[row.key] = render_row(row, now)
                table.add_row(*cells, key=row.key)
            self._shown_keys = keys
            if keys:
                index = (
                    keys.index(selected.key)
                    if selected and selected.key in keys
                    else min(max(old_index, 0), len(keys) - 1)
                )
                table.move_cursor(row=index)
        else:
            for row in visible:
                cells = render_row(row, now)
                old = self._cells[row.key]
                for (column, _), new, before in zip(COLUMNS, cells, old, strict=True):
                    if not _same(new, before):
                        table.update_cell(row.key, column, new, update_width=True)
                self._cells[row.key] = cells
        self._show_status(len(visible))
        self._show_detail()

    def _show_status(self, visible: int) -> None:
        statuses = list(self._statuses.values())
        parts = [f"{sum(s.reachable for s in statuses)}/{len(self._hosts)} hosts reachable"]
        if self._polled_at is not None and statuses:
            # Hosts answer on their own cycles: the latest answer, and the slowest poll.
            slowest = max(s.seconds for s in statuses)
            took = f"{slowest * 1000:.0f}ms" if slowest < 1 else f"{slowest:.1f}s"
            parts.append(
                f"polled {time.strftime('%H:%M:%S', time.localtime(self._polled_at))} in {took}"
            )
        if self._filter.strip():
            parts.append(f"{visible}/{len(self._rows)} rows")
        self.sub_title = " · ".join(parts)

    def _show_detail(self) -> None:
        row = self.selected_row()
        detail = self.query_one("#detail", Static)
        if row is None:
            detail.update(
                Text(
                    f"no rows match {self._filter.strip()!r}"
                    if self._filter.strip()
                    else "no processes",
                    style="dim",
                )
            )
            return
        text = Text()
        text.append(row.key, style="bold")
        text.append("  ")
        text.append(row.state, style=STATE_STYLES.get(row.state, ""))
        if row.description:
            text.append("  " + " ".join(row.description.split()))
        if row.state == UNREACHABLE and row.last_change is not None:
            text.append(
                f"  (since {time.strftime('%H:%M:%S', time.localtime(row.last_change))})",
                style="dim",
            )
        if row.restarts:
            when = time.strftime("%H:%M:%S", time.localtime(row.restarted_at or 0))
            text.append(f"  restarted {row.restarts}× (last at {when})", style="yellow")
        detail.update(text)

    @on(DataTable.RowHighlighted)
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
            return filter_input.display and (typing or self._tail is None)
        if action == "close_tail":
            return self._tail is not None and not typing
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    def action_cursor(self, direction: str) -> None:
        table = self.table
        (table.action_cursor_down if direction == "down" else table.action_cursor_up)()

    # --- actions --------------------------------------------------------------------

    def _program_row(self) -> Optional[FleetRow]:
        row = self.selected_row()
        if row is None or row.program is None:
            self.notify("Select a program row first.", severity="warning", timeout=3)
            return None
        return row

    def action_act(self, action: str) -> None:
        row = self._program_row()
        if row is not None:
            self._run_action(row, action)

    def action_stop(self) -> None:
        row = self._program_row()
        if row is None:
            return

        def answered(stop: Optional[bool]) -> None:
            if stop:
                self._run_action(row, "stop")

        self.app.push_screen(ConfirmStop(row.host, row.program), answered)

    def _run_action(self, row: FleetRow, action: str) -> None:
        host = self._host[row.host]
        command = sv.action_command(host.supervisorctl, action, [row.program])
        self.notify(f"{action} {row.program} on {row.host}…", timeout=2, markup=False)
        # An app worker: its answer is still shown if the user has left this screen.
        self.app.run_worker(
            self._action(host, row.program, action, command),
            group="process-action",
            name=f"{action} {row.key}",
        )

    async def _action(self, host: Host, program: str, action: str, command: str) -> None:
        app = self.app
        timeout = self.config.settings.command_timeout
        title = f"{action} {program} on {host.name}"
        res: Optional[Result] = None
        try:
            res = await self._in_thread(
                self.poller.on_host, host, lambda t: t.run(command, timeout=timeout, sudo=True)
            )
        except TransportError as exc:
            app.notify(exc.message, title=f"{title} failed", severity="error", markup=False)
        except Exception as exc:  # a bug must not take the console down mid-incident
            app.notify(repr(exc), title=f"{title} failed", severity="error", markup=False)
        if res is not None:
            answers = sv.parse_action_output(res.stdout)
            if answers:
                message = "\n".join(f"{name}: {what}" for name, what in answers.items())
                failed = [
                    w for w in answers.values() if w.startswith("ERROR") and w not in _HARMLESS
                ]
                harmless = [w for w in answers.values() if w in _HARMLESS]
                severity = "error" if failed else "warning" if harmless else "information"
            else:
                message = res.tail(5) or f"no output (exit {res.exit_code})"
                severity = "information" if res.ok else "error"
            app.notify(
                message,
                title=title,
                severity=severity,
                markup=False,
                timeout=8 if severity == "error" else 4,
            )
        if not self._closing_down:
            self._poll_soon(host)

    def action_leave(self) -> None:
        self.app.pop_screen()

    # --- filter ---------------------------------------------------------------------

    def action_filter(self) -> None:
        filter_input = self.query_one("#filter", Input)
        filter_input.display = True
        # At once, not focus()'s call_later: keys typed right after "/" are already queued.
        self.set_focus(filter_input)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._filter = event.value
        self._show()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        if not self._filter.strip():
            self.action_close_filter()
        else:
            self.set_focus(self.table)

    def action_close_filter(self) -> None:
        filter_input = self.query_one("#filter", Input)
        filter_input.value = ""
        self._filter = ""
        filter_input.display = False
        self.set_focus(self.table)
        self._show()
        self.refresh_bindings()

    # --- log tail -------------------------------------------------------------------

    def action_tail(self, stream: str) -> None:
        row = self._program_row()
        if row is None:
            return
        self._tail_seq += 1
        self._tail = _Tail(self._host[row.host], row.program, stream, self._tail_seq)
        pane = self.query_one("#tail")
        pane.border_title = Text(f"{row.program} on {row.host}: {stream}")
        pane.border_subtitle = Text("fetching… · esc closes")
        self.query_one("#tail-log", Log).clear()
        pane.display = True
        self.refresh_bindings()
        self._fetch_tail(self._tail.seq)

    def action_close_tail(self) -> None:
        self._tail = None
        self.query_one("#tail").display = False
        self.refresh_bindings()

    def _fetch_tail(self, seq: int) -> None:
        if self._tail is not None and self._tail.seq == seq:
            self.run_worker(self._tail_once(self._tail), group="tail", name="tail")

    async def _tail_once(self, tail: _Tail) -> None:
        command = sv.tail_command(tail.host.supervisorctl, tail.program, tail.stream, TAIL_BYTES)
        timeout = self.config.settings.connect_timeout
        error = None
        try:
            res: Result = await self._in_thread(
                self.poller.on_host, tail.host, lambda t: t.run(command, timeout=timeout, sudo=True)
            )
        except TransportError as exc:
            error = exc.message
        except Exception as exc:  # a bug must not take the console down mid-incident
            error = repr(exc)
        if self._tail is not tail or self._closing_down:
            return  # closed or replaced meanwhile
        pane = self.query_one("#tail")
        if error is None and not res.ok:
            error = res.tail(2) or f"exit {res.exit_code}"
        if error is not None:
            pane.border_subtitle = Text(f"retrying: {' '.join(error.split())}")
        else:
            self._append_tail(tail, res.stdout)
            empty = "" if tail.shown.strip() else "the log is empty so far · "
            pane.border_subtitle = Text(f"{empty}live · esc closes")
        self.set_timer(TAIL_INTERVAL, partial(self._fetch_tail, tail.seq))

    def _append_tail(self, tail: _Tail, output: str) -> None:
        # supervisorctl prints the log bytes plus one newline of its own.
        window = output[:-1] if output.endswith("\n") else output
        new = new_log_text(tail.shown, window)
        if tail.fetches == 0 and len(window.encode()) >= TAIL_BYTES - 1 and "\n" in new:
            new = new.split("\n", 1)[1]  # the window starts mid-line
        tail.shown = window
        tail.fetches += 1
        if new:
            self.query_one("#tail-log", Log).write(new)

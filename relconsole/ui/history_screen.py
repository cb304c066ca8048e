"""The history screen (``h``): every build, rollback and unlock recorded on this machine,
newest first; enter opens one run's log (:mod:`relconsole.ui.build_log_screen`).

SQLite is read in thread workers; the list is read again each time the screen comes
back to the top, so runs that ended meanwhile appear. Logs are shown in a ``Log``
(plain text): what a program printed is never read as markup.
"""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from relconsole.config import Config
from relconsole.history import History
from relconsole.text import printable
from relconsole.ui.build_log_screen import RESULT_STYLES, BuildLogScreen
from relconsole.ui.clock import seconds_text, started_text
from relconsole.ui.footer import Footer
from relconsole.ui.measured_table import MeasuredTable

#: Rows read per load (the history keeps everything; the screen shows the newest).
LIMIT = 500

# The release (23 columns, and its sha and time are already shown) goes last, so 80
# columns show everything else.
COLUMNS = [
    ("#", "number"),
    ("service", "service"),
    ("action", "action"),
    ("result", "result"),
    ("branch", "branch"),
    ("sha", "sha"),
    ("started", "started"),
    ("took", "duration"),
    ("trigger", "trigger"),
    ("who", "who"),
    ("release", "release"),
]


def row_cells(row: dict) -> list[Text]:
    """One history row as table cells; rich Text, never str (DataTable reads str as markup)."""
    duration = row.get("duration")
    return [
        Text(str(row["number"]), justify="right"),
        Text(row["service"]),
        Text(row["action"]),
        Text(row["result"], style=RESULT_STYLES.get(row["result"], "")),
        Text(row.get("branch") or ""),
        Text((row.get("sha") or "")[:7]),
        Text(started_text(row["started"])),
        Text("" if duration is None else seconds_text(duration), justify="right"),
        Text(row.get("trigger") or "", style="dim"),
        Text(row.get("who") or "", style="dim"),
        # A run deploys no release: its command stands there instead.
        Text(row.get("release") or command_text(row.get("command")), style="dim"),
    ]


def command_text(command: Optional[str]) -> str:
    return f"$ {printable(command)}" if command else ""


def row_key(service: str, number: int) -> str:
    return f"{service}#{number}"


class HistoryScreen(Screen[None]):
    """Builds newest first, of one service or of all; enter opens a build's log."""

    AUTO_FOCUS = "#history"
    BINDINGS = [
        Binding("escape,h", "app.pop_screen", "Back", key_display="esc"),
        # One key, two meanings: check_action enables the one that applies.
        Binding("a", "show_all(True)", "All services"),
        Binding("a", "show_all(False)", "One service"),
        Binding("r", "reload", "Reload"),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    class Loaded(Message):
        def __init__(
            self, service: Optional[str], rows: Optional[list[dict]], error: Optional[str] = None
        ) -> None:
            super().__init__()
            self.service = service
            self.rows = rows
            self.error = error

    def __init__(self, config: Config, service: Optional[str]) -> None:
        super().__init__(id="history-screen")
        self.config = config
        self.service = service  # the main screen's selection
        self.show_all = service is None
        self.rows: dict[str, dict] = {}
        self.log_was_open = False

    def compose(self) -> ComposeResult:
        yield Static(id="history-title", markup=False)
        yield MeasuredTable(id="history", cursor_type="row", fixed_columns=2, zebra_stripes=True)
        yield Static(id="history-note", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        self.reload()

    def on_screen_resume(self) -> None:
        # Back from a run's log: runs may have ended meanwhile. Not on the resume that
        # comes with the push, nor when the palette closes (a reload moves the view).
        if self.log_was_open:
            self.log_was_open = False
            self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        if action == "show_all":
            return self.service is not None and parameters[0] != self.show_all
        return True

    @property
    def scope(self) -> Optional[str]:
        return None if self.show_all else self.service

    def action_show_all(self, show_all: bool) -> None:
        self.show_all = show_all
        self.reload()
        self.refresh_bindings()

    def action_reload(self) -> None:
        self.reload()

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def reload(self) -> None:
        scope = self.scope
        what = f"history of {scope}" if scope else "history of every service"
        self.query_one("#history-title", Static).update(
            Content.assemble(
                (what, "bold"),
                ("  · enter: log · a: ", "$text-muted"),
                (
                    "all services" if scope else f"only {self.service}" if self.service else "",
                    "$text-muted",
                ),
            )
        )
        self.load(scope)

    @work(thread=True, group="history", exclusive=True, exit_on_error=False)
    def load(self, service: Optional[str]) -> None:
        try:
            history = History(self.config.settings.state_dir)
            try:
                rows = history.list(service, limit=LIMIT)
            finally:
                history.close()
        except Exception as exc:  # sqlite3.Error, OSError: say so, keep the screen
            self.post_message(self.Loaded(service, None, f"cannot read the history: {exc}"))
            return
        self.post_message(self.Loaded(service, rows))

    @on(Loaded)
    def show_rows(self, message: Loaded) -> None:
        if message.service != self.scope:
            return  # the operator toggled meanwhile; a newer load is coming
        note = self.query_one("#history-note", Static)
        if message.rows is None:
            note.update(message.error or "")
            return
        table = self.query_one(DataTable)
        keep = None
        if table.row_count:
            try:
                keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            except Exception:  # no valid cursor
                keep = None
        table.clear()
        self.rows = {}
        for row in message.rows:
            key = row_key(row["service"], row["number"])
            self.rows[key] = row
            table.add_row(*row_cells(row), key=key)
        if keep in self.rows:
            table.move_cursor(row=table.get_row_index(keep))
        count = len(message.rows)
        note.update(
            "no builds recorded yet"
            if not count
            else f"{count} run(s){' (newest ' + str(LIMIT) + ')' if count >= LIMIT else ''}"
        )

    @on(DataTable.RowSelected, "#history")
    def open_log(self, event: DataTable.RowSelected) -> None:
        row = self.rows.get(event.row_key.value or "")
        if row is not None:
            self.log_was_open = True
            self.app.push_screen(BuildLogScreen(self.config, row))

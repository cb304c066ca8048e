"""One recorded run's log (from the history screen), as plain text: what a program
printed is never read as markup."""

from __future__ import annotations

from typing import Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Log, Static

from relconsole.config import Config
from relconsole.history import History
from relconsole.text import printable
from relconsole.ui.clock import date_time_text, seconds_text
from relconsole.ui.footer import Footer

RESULT_STYLES = {
    "success": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "rolled back": "bold magenta",
    "running": "cyan",
    "locked": "yellow",
    "interrupted": "bold red",
}


class BuildLogScreen(Screen[None]):
    """One run's recorded log, as plain text."""

    AUTO_FOCUS = "#build-log"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", key_display="esc"),
        Binding("g", "top", "Top"),
        Binding("G", "bottom", "End"),
    ]

    class Loaded(Message):
        def __init__(self, row: Optional[dict], error: Optional[str] = None) -> None:
            super().__init__()
            self.row = row
            self.error = error

    def __init__(self, config: Config, row: dict) -> None:
        super().__init__(id="build-log-screen")
        self.config = config
        self.row = row

    def compose(self) -> ComposeResult:
        yield Static(id="build-log-title", markup=False)
        yield Log(id="build-log", highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.show_title(self.row)
        self.load(self.row["service"], self.row["number"])

    def show_title(self, row: dict) -> None:
        result = row["result"]
        duration = row.get("duration")
        parts: list = [
            (f"{row['action']} #{row['number']} of {row['service']}", "bold"),
            "  ",
            (result, RESULT_STYLES.get(result, "").replace("bold ", "") or "bold"),
            f"  {row.get('branch') or ''} {(row.get('sha') or '')[:12]}",
            f"  {row.get('release') or ''}",
            f"  {date_time_text(row['started'])}",
            f"  {seconds_text(duration) if duration is not None else ''}",
            f"  {row.get('who') or ''} ({row.get('trigger') or ''})",
        ]
        if row.get("subject"):
            parts += ["\n“", printable(row["subject"]), "”"]
        if row.get("error"):
            parts += ["\n", ("✘ ", "$error"), printable(row["error"])]
        self.query_one("#build-log-title", Static).update(Content.assemble(*parts))

    @work(thread=True, group="build-log", exit_on_error=False)
    def load(self, service: str, number: int) -> None:
        try:
            history = History(self.config.settings.state_dir)
            try:
                row = history.get(service, number)
            finally:
                history.close()
        except Exception as exc:
            self.post_message(self.Loaded(None, f"cannot read the history: {exc}"))
            return
        self.post_message(self.Loaded(row, None if row else "this run is no longer recorded"))

    @on(Loaded)
    def show_log(self, message: Loaded) -> None:
        log = self.query_one(Log)
        if message.row is None:
            log.write_line(message.error or "")
            return
        self.row = message.row
        self.show_title(message.row)
        text = message.row.get("log") or ""
        if not text:
            log.write_line(
                "(the log is saved when the run ends)"
                if message.row["result"] == "running"
                else "(no output was recorded)"
            )
            return
        # Opens at the end, where a failed run says why; g goes to the top.
        log.write_lines([printable(line) or " " for line in text.splitlines()])

    def action_top(self) -> None:
        self.query_one(Log).scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.query_one(Log).scroll_end(animate=False)

"""The doctor (palette: "Doctor"): ``relconsole --doctor`` in the console.

Every host of every service checked in parallel over its route, on the console's own
connections and jump hosts, without a lock (it may run while a build runs). Rows
arrive as each host is done; a host's detail is plain text, never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from relconsole.doctor import CheckRow, run_doctor
from relconsole.text import printable
from relconsole.ui.console import Console
from relconsole.ui.footer import Footer
from relconsole.ui.measured_table import MeasuredTable


class DoctorScreen(Screen[None]):
    app: Console

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back")]

    class RowChecked(Message):
        def __init__(self, row: CheckRow) -> None:
            super().__init__()
            self.row = row

    class Done(Message):
        def __init__(self, failed: int, error: str | None = None) -> None:
            super().__init__()
            self.failed = failed
            self.error = error

    def compose(self) -> ComposeResult:
        yield Static("checking every host…", id="doctor-status", markup=False)
        yield MeasuredTable(id="doctor", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "doctor"
        table = self.query_one(DataTable)
        for label in ("host", "check", "ok", "detail"):
            table.add_column(label, key=label)
        table.focus()
        self.check()

    @work(thread=True, exit_on_error=False)
    def check(self) -> None:
        config = self.app.config

        def show(row: CheckRow) -> None:
            self.post_message(self.RowChecked(row))

        try:
            rows = run_doctor(
                config,
                list(config.services.values()),
                connector=self.app.poller.connector,
                on_row=show,
            )
        except Exception as exc:  # a bug must not leave the screen saying "checking"
            self.post_message(self.Done(0, f"the doctor failed: {type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Done(sum(not r.ok for r in rows)))

    def on_doctor_screen_row_checked(self, message: RowChecked) -> None:
        row = message.row
        self.query_one(DataTable).add_row(
            Text(row.host, style="bold"),
            Text(row.check),
            Text("✔", style="green") if row.ok else Text("✘", style="bold red"),
            Text(printable(row.detail)),
        )

    def on_doctor_screen_done(self, message: Done) -> None:
        status = self.query_one("#doctor-status", Static)
        if message.error:
            status.update(message.error)
        elif message.failed:
            status.update(f"{message.failed} check(s) failed")
        else:
            status.update("every check passed")

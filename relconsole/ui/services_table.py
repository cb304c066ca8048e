"""The services table: one row per service with its branch, its lock and its last run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Optional

from rich.text import Text
from textual.binding import Binding

from relconsole.config import Service
from relconsole.events import BuildFinished
from relconsole.ui.measured_table import MeasuredTable


def last_cell(action: str, result: str, sha: Optional[str]) -> Text:
    """How a service's last run ended: icon and colour, then the sha (9 columns)."""
    sha = (sha or "")[:7] or "—"
    if result == "running":
        return Text("● running", style="yellow")
    icon, style = {
        "success": ("✔", "green"),
        "cancelled": ("■", "yellow"),
        "rolled back": ("↶", "red"),
        "locked": ("⊘", "yellow"),
    }.get(result, ("✘", "red"))
    if action == "rollback" and result == "success":
        icon = "↶"  # the fleet went back: green, but not a new deploy
    return Text.assemble((f"{icon} ", style), sha)


class ServiceTable(MeasuredTable):
    """One row per service: name (with 🔒 while locked), branch, and its last run."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, services: Sequence[Service], *, id: Optional[str] = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.services = list(services)
        self.locked: dict[str, bool] = {}
        self.running: Optional[str] = None  # the run this console shows live
        #: When each service's last run result was shown (time.monotonic()): a history
        #: read begun before it is older and must not overwrite it.
        self.result_shown_at: dict[str, float] = {}

    def on_mount(self) -> None:
        self.add_column("service", key="service")
        self.add_column("branch", key="branch")
        self.add_column("last", key="last")
        for service in self.services:
            # rich Text cells, never str: DataTable parses str cells as markup.
            self.add_row(
                Text(service.name), Text(service.branch), Text("—", style="dim"), key=service.name
            )

    @property
    def selected(self) -> Optional[str]:
        if not self.services or self.row_count == 0:
            return None
        return self.services[min(self.cursor_row, len(self.services) - 1)].name

    def select(self, name: str) -> None:
        names = [s.name for s in self.services]
        if name in names:
            self.move_cursor(row=names.index(name))

    def show_lock(self, name: str, locked: bool, stale: bool = False) -> None:
        if self.locked.get(name) == locked:
            return
        self.locked[name] = locked
        cell = Text(name)
        if locked:
            cell.append(" 🔒", style="bold yellow" if stale else "bold red")
        self.update_cell(name, "service", cell, update_width=True)

    def show_running(self, name: str) -> None:
        self.running = name
        self.update_cell(name, "last", last_cell("build", "running", None), update_width=True)

    def show_last(self, name: str, row: dict, read_at: float) -> None:
        """The newest recorded run of ``name`` (from the history, read from
        ``read_at`` on, a time.monotonic())."""
        if name == self.running:
            return  # the live run is newer than anything recorded
        if read_at < self.result_shown_at.get(name, float("-inf")):
            return  # read while a run went on: the result shown since is newer
        cell = last_cell(row["action"], row["result"], row.get("sha"))
        if self.get_cell(name, "last") != cell:  # every poll reads it again
            self.update_cell(name, "last", cell, update_width=True)

    def show_result(self, event: BuildFinished, action: str = "build") -> None:
        if self.running == event.service:
            self.running = None
        self.result_shown_at[event.service] = time.monotonic()
        self.update_cell(
            event.service,
            "last",
            last_cell(action, event.result.value, event.sha),
            update_width=True,
        )

"""The left column of the main screen: the services table and the selected service's hosts."""

from __future__ import annotations

import textwrap
from typing import Mapping, Optional, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Static

from .config import Service
from .events import BuildFinished
from .headless import printable
from .status import HostStatus
from .supervisor import State


def programs_up(status: HostStatus, programs: Sequence[str]) -> Content:
    """" · 2/2 up" for the service's processes on a reachable host ("" if it has none)."""
    rows = [r for r in status.rows if any(r.belongs_to(p) for p in programs)]
    if not programs:
        return Content("")
    running = sum(r.state is State.RUNNING for r in rows)
    style = "$success" if rows and running == len(rows) else "$warning"
    return Content.assemble(" · ", (f"{running}/{len(rows)} up", style))


class ServiceTable(DataTable):
    """One row per service: name, branch, and this session's last build."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, services: Sequence[Service], *, id: Optional[str] = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.services = list(services)

    def on_mount(self) -> None:
        self.add_column("service", key="service")
        self.add_column("branch", key="branch")
        self.add_column("last", key="last")
        for service in self.services:
            # rich Text cells, never str: DataTable parses str cells as markup.
            self.add_row(Text(service.name), Text(service.branch), Text("—", style="dim"),
                         key=service.name)

    @property
    def selected(self) -> Optional[str]:
        if not self.services or self.row_count == 0:
            return None
        return self.services[min(self.cursor_row, len(self.services) - 1)].name

    def select(self, name: str) -> None:
        names = [s.name for s in self.services]
        if name in names:
            self.move_cursor(row=names.index(name))

    def show_running(self, name: str) -> None:
        self.update_cell(name, "last", Text("● running", style="yellow"), update_width=True)

    def show_result(self, event: BuildFinished) -> None:
        sha = event.sha[:7] if event.sha else ""
        # Icon and colour say how it ended; 9 columns whatever the outcome.
        if event.ok:
            cell = Text.assemble(("✔ ", "green"), sha)
        elif event.cancelled:
            cell = Text.assemble(("■ ", "yellow"), sha or "—")
        else:
            cell = Text.assemble(("✘ ", "red"), sha or "—")
        self.update_cell(event.service, "last", cell, update_width=True)


class HostList(VerticalScroll, can_focus=False):
    """Reachability of the selected service's hosts, from the app's status poller."""

    DEFAULT_CSS = """
    HostList {
        height: auto;
        & > Static { height: auto; }
    }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.body = Static()
        self._shown: tuple = ((), {}, ())

    def compose(self):
        yield self.body

    def on_resize(self) -> None:
        self.show(*self._shown)

    def show(self, hosts: Sequence[str], statuses: Mapping[str, HostStatus],
             programs: Sequence[str] = ()) -> None:
        """``statuses``: host name -> HostStatus, absent while the first poll runs."""
        self._shown = (hosts, statuses, programs)
        width = max(10, self.body.content_size.width - 2)
        lines = []
        for host in hosts:
            status = statuses.get(host)
            if status is None:
                lines.append(Content.assemble(("… ", "$text-muted"), (host, "bold"),
                                              (" checking", "$text-muted")))
            elif status.reachable:
                lines.append(Content.assemble(("✔ ", "$success"), (host, "bold"), " reachable",
                                              programs_up(status, programs)))
            else:
                lines.append(Content.assemble(("✘ ", "$error"), (host, "bold"),
                                              (" unreachable", "$error")))
                reason = printable(status.error or "").strip() or "no reason given"
                # Hanging indent under the host name: the reason is often long.
                lines += [Content.assemble("  ", (part, "$text-muted"))
                          for part in textwrap.wrap(reason, width)]
        self.body.update(Content("\n").join(lines) if lines else Content("no hosts"))

"""The left column of the main screen: the services table and the selected service's hosts."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Optional

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Static

from relconsole.config import Service
from relconsole.deployed import Deployed, Pending
from relconsole.events import BuildFinished
from relconsole.lock import ServiceLock
from relconsole.status.poller import HostStatus
from relconsole.status.supervisorctl import State
from relconsole.text import printable


def programs_up(status: HostStatus, programs: Sequence[str]) -> Content:
    """ " · 2/2 up" for the service's processes on a reachable host ("" if it has none)."""
    rows = [r for r in status.rows if any(r.belongs_to(p) for p in programs)]
    if not programs:
        return Content("")
    running = sum(r.state is State.RUNNING for r in rows)
    style = "$success" if rows and running == len(rows) else "$warning"
    return Content.assemble(" · ", (f"{running}/{len(rows)} up", style))


def last_cell(action: str, result: str, sha: Optional[str]) -> Text:
    """How a service's last run ended: icon and colour, then the sha (9 columns)."""
    sha = (sha or "")[:7] or "—"
    if result == "running":
        return Text("● running", style="yellow")
    icon, style = {
        "success": ("✔", "green"),
        "cancelled": ("■", "yellow"),
        "rolled back": ("↶", "red"),
    }.get(result, ("✘", "red"))
    if action == "rollback" and result == "success":
        icon = "↶"  # the fleet went back: green, but not a new deploy
    return Text.assemble((f"{icon} ", style), sha)


def release_text(release: str, width: int) -> str:
    """The release id, or "sha7 · MM-DD HH:MM" when the id does not fit."""
    if len(release) <= width:
        return release
    stamp, _, sha = release.rpartition("-")
    day, _, clock = stamp.partition("-")
    short = f"{sha} · {day[4:6]}-{day[6:8]} {clock[:2]}:{clock[2:4]}"
    return short if len(short) <= width else sha


class ServiceTable(DataTable):
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

    def show_last(self, name: str, row: dict) -> None:
        """The newest recorded run of ``name`` (from the history)."""
        if name == self.running:
            return  # the live run is newer than anything recorded
        cell = last_cell(row["action"], row["result"], row.get("sha"))
        if self.get_cell(name, "last") != cell:  # every poll reads it again
            self.update_cell(name, "last", cell, update_width=True)

    def show_result(self, event: BuildFinished, action: str = "build") -> None:
        if self.running == event.service:
            self.running = None
        self.update_cell(
            event.service,
            "last",
            last_cell(action, event.result.value, event.sha),
            update_width=True,
        )


class HostList(VerticalScroll, can_focus=False):
    """The selected service's hosts: reachability from the app's status poller, what
    each runs (its release, drift flagged), and who holds the deploy lock."""

    DEFAULT_CSS = """
    HostList {
        height: auto;
        & > Static { height: auto; }
    }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.body = Static()
        self._shown: tuple = ((), {}, (), {}, None)
        self._key: tuple = ()

    def compose(self):
        yield self.body

    def on_resize(self) -> None:
        self.show(*self._shown)

    def show(
        self,
        hosts: Sequence[str],
        statuses: Mapping[str, HostStatus],
        programs: Sequence[str] = (),
        deployed: Optional[Mapping[str, Deployed]] = None,
        lock: Optional[ServiceLock] = None,
    ) -> None:
        """``statuses``: host name -> HostStatus, absent while the first poll runs;
        ``deployed``: host name -> what it runs, when known."""
        deployed = deployed or {}
        self._shown = (hosts, statuses, programs, deployed, lock)
        width = max(10, self.body.content_size.width - 2)

        def wrapped(text: str, style: str) -> list[Content]:
            # Hanging indent under the host name: reasons are often long.
            return [Content.assemble("  ", (part, style)) for part in textwrap.wrap(text, width)]

        lines = []
        if lock is not None:
            style = "$warning" if lock.stale else "$error"
            lines.append(
                Content.assemble(
                    ("🔒 locked", f"bold {style}"), (" (stale)" if lock.stale else "", style)
                )
            )
            lines += wrapped(printable(lock.describe()), "$text-muted")
        for host in hosts:
            status = statuses.get(host)
            if status is None:
                lines.append(
                    Content.assemble(
                        ("… ", "$text-muted"), (host, "bold"), (" checking", "$text-muted")
                    )
                )
            elif status.reachable:
                lines.append(
                    Content.assemble(
                        ("✔ ", "$success"),
                        (host, "bold"),
                        " reachable",
                        programs_up(status, programs),
                    )
                )
            else:
                lines.append(
                    Content.assemble(("✘ ", "$error"), (host, "bold"), (" unreachable", "$error"))
                )
                reason = printable(status.error or "").strip() or "no reason given"
                lines += wrapped(reason, "$text-muted")
                continue
            runs = deployed.get(host)
            if runs is None or runs.error:
                continue
            if runs.release is None:
                lines.append(Content.assemble("  ", ("nothing deployed", "$text-muted")))
                continue
            drift = " ≠ drift" if runs.drift else ""
            lines.append(
                Content.assemble(
                    "  ",
                    (
                        release_text(runs.release, width - len(drift)),
                        "$warning" if runs.drift else "$text-muted",
                    ),
                    (drift, "bold $warning"),
                )
            )
        content = Content("\n").join(lines) if lines else Content("no hosts")
        # Polls repeat mostly the same words: an update lays out the whole screen.
        key = (content.plain, tuple(content.spans))
        if key != self._key:
            self._key = key
            self.body.update(content)


class PendingList(VerticalScroll, can_focus=True):
    """The commits a build would deploy: what the hosts run up to the branch's tip."""

    DEFAULT_CSS = """
    PendingList {
        height: 1fr;
        & > Static { height: auto; }
    }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.body = Static()
        self._shown: Optional[Pending] = None
        self._waiting = "—"

    def compose(self):
        yield self.body

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(self._shown, force=True)

    def show_waiting(self, why: str) -> None:
        self._shown, self._waiting = None, why
        self.body.update(Content.styled(why, "$text-muted"))

    def show(self, pending: Pending, *, force: bool = False) -> None:
        if pending == self._shown and not force:
            return
        self._shown = pending
        width = max(10, self.body.content_size.width)
        self.border_title = f"not deployed · {pending.branch}"
        if pending.error:
            self.border_subtitle = ""
            self.body.update(Content.styled(printable(pending.error), "$text-muted"))
            return
        count = len(pending.commits)
        lines: list[Content] = []
        if pending.base is None:
            self.border_subtitle = ""
            lines.append(Content.styled(f"{pending.note}: latest commits", "$warning"))
        elif count == 0:
            self.border_subtitle = "up to date"
            lines.append(
                Content.styled(
                    f"✔ hosts run the tip of {pending.branch} ({pending.base[:7]})", "$success"
                )
            )
        else:
            self.border_subtitle = f"{count}{'+' if count >= 50 else ''} commit(s)"
        for commit in pending.commits:
            text = f"{commit.sha[:7]} {printable(commit.subject)}"
            if len(text) > width:
                text = text[: max(8, width - 1)] + "…"
            lines.append(Content.assemble((text[:8], "bold"), text[8:]))
        self.body.update(Content("\n").join(lines))

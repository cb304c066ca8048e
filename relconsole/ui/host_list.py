"""The selected service's hosts: reachable or not (and why), how many of its programs
are up, what release each runs (drift flagged), and who holds the deploy lock."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Optional

from textual.containers import VerticalScroll
from textual.content import Content

from relconsole.deployed import Deployed
from relconsole.lock import ServiceLock
from relconsole.status.poller import HostStatus
from relconsole.status.supervisorctl import State
from relconsole.text import printable
from relconsole.ui.note import Note


def programs_up(status: HostStatus, programs: Sequence[str]) -> Content:
    """ " · 2/2 up" for the service's processes on a reachable host ("" if it has none)."""
    rows = [r for r in status.rows if any(r.belongs_to(p) for p in programs)]
    if not programs:
        return Content("")
    running = sum(r.state is State.RUNNING for r in rows)
    style = "$success" if rows and running == len(rows) else "$warning"
    return Content.assemble(" · ", (f"{running}/{len(rows)} up", style))


def release_text(release: str, width: int) -> str:
    """The release id, or "sha7 · MM-DD HH:MM" when the id does not fit."""
    if len(release) <= width:
        return release
    stamp, _, sha = release.rpartition("-")
    day, _, clock = stamp.partition("-")
    short = f"{sha} · {day[4:6]}-{day[6:8]} {clock[:2]}:{clock[2:4]}"
    return short if len(short) <= width else sha


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
        self.body = Note()
        self._shown: tuple = ((), {}, (), {}, None, {})
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
        routes: Optional[Mapping[str, str]] = None,
    ) -> None:
        """``statuses``: host name -> HostStatus, absent while the first poll runs;
        ``deployed``: host name -> what it runs, when known; ``routes``: host name ->
        its jump hosts, for hosts reached through some."""
        deployed = deployed or {}
        routes = routes or {}
        self._shown = (hosts, statuses, programs, deployed, lock, routes)
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
            route = [*wrapped(routes[host], "$text-muted")] if host in routes else []
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
                lines += route
                reason = printable(status.error or "").strip() or "no reason given"
                lines += wrapped(reason, "$text-muted")
                continue
            lines += route
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

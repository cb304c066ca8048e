"""The pane of a per-host stage (upload, switch, supervisor, rollback): one ``Log`` per
host, side by side when each gets enough width, else tabbed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional, Self

from rich.cells import cell_len
from rich.style import Style
from textual import on
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Log, Tab, Tabs

from relconsole.ui.stage_strip import ICONS

#: Lines kept per pane; older lines scroll away.
MAX_LINES = 10_000


class PaneLog(Log):
    """A ``Log`` for a build's panes, cheap to feed while nobody looks at it.

    Held (:meth:`hold`, a host's log off screen), it keeps the lines it is given (the
    last :data:`MAX_LINES`) and writes them when released: writing to a ``Log`` costs
    its scroll, size and refresh bookkeeping even when hidden, and 50 host panes fed 30
    times a second took the event loop from the keys (bench/tui_latency.py).

    It also measures the width of new lines where they are written: Textual's ``Log``
    starts a thread worker for that on every ``write_lines`` (1,500 workers a second
    for 50 host panes), whose threads and state messages compete with the keys too.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.holding = False
        self._held: list[str] = []
        self._pass_style: Optional[Style] = None

    # Textual's Log asks for its rich_style once per line it renders, and each answer
    # walks every ancestor's styles: ~0.1 ms a line, most of a streaming pane's redraw.
    # One answer serves a whole render pass (styles do not change during one).
    def render_lines(self, crop: Region) -> list[Strip]:
        self._pass_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._pass_style = None

    @property
    def rich_style(self) -> Style:
        return self._pass_style if self._pass_style is not None else super().rich_style

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.holding = False
        if self._held:
            held, self._held = self._held, []
            self.write_lines(held)

    def write_lines(self, lines: Iterable[str], scroll_end: Optional[bool] = None) -> Self:
        if not self.holding:
            return super().write_lines(lines, scroll_end)
        self._held.extend(lines)
        del self._held[:-MAX_LINES]
        return self

    @property
    def text(self) -> list[str]:
        """Every line it shows or holds (the last :data:`MAX_LINES`)."""
        return [*self.lines, *self._held][-MAX_LINES:]

    # Overrides the thread worker (a method the @work decorator wraps) with a plain call.
    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        if lines:
            width = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, width)


def make_log(id: Optional[str] = None) -> PaneLog:
    return PaneLog(max_lines=MAX_LINES, id=id)


class HostLogs(Vertical):
    DEFAULT_CSS = """
    HostLogs {
        height: 1fr;
        & > Tabs { height: 2; }
        & > #host-logs { height: 1fr; }
        & Log { width: 1fr; height: 1fr; display: none; }
        & Log.-shown { display: block; }
        &.-side-by-side {
            & > Tabs { display: none; }
            & Log {
                display: block;
                border: round $panel-lighten-2;
                border-title-align: left;
                border-title-color: $text;
                &:focus { border: round $accent; }
            }
        }
    }
    """
    #: Columns a host's pane needs before panes go side by side.
    MIN_COLUMN = 56

    def __init__(self, stage: str, hosts: Sequence[str], *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.stage = stage
        self.hosts = list(hosts)
        self.logs = {h: make_log() for h in hosts}
        self.states = dict.fromkeys(hosts, "pending")
        #: The host whose log the tabs show, and whether this pane is on screen.
        self.shown: Optional[str] = self.hosts[0] if self.hosts else None
        self.on_screen = False
        self.side_by_side = False
        self.hold_hidden()
        self.tabs = {h: Tab(h, id=f"host-{i}") for i, h in enumerate(hosts)}

    def mount_parts(self) -> None:
        """Mount the tabs and logs at once, right after this pane was mounted: output
        for them may come in the same batch, and a ``Log`` must be in the DOM to write."""
        box = Horizontal(id="host-logs")
        self.mount(Tabs(*self.tabs.values()), box)
        box.mount_all(self.logs.values())
        for host in self.hosts:
            self.label(host)
        if self.hosts:
            self.logs[self.hosts[0]].add_class("-shown")

    def hold_hidden(self) -> None:
        """Hold the logs off screen, release those on it (see :class:`PaneLog`)."""
        for name, log in self.logs.items():
            if self.on_screen and (self.side_by_side or name == self.shown):
                log.release()
            else:
                log.hold()

    def show_on_screen(self, shown: bool) -> None:
        """This pane became the one on screen (or stopped being it)."""
        self.on_screen = shown
        self.hold_hidden()

    def show_host(self, host: str) -> None:
        self.shown = host
        self.hold_hidden()
        for name, log in self.logs.items():
            log.set_class(name == host, "-shown")
        tab_id = f"host-{self.hosts.index(host)}"
        tabs = self.query_one(Tabs)
        if tabs.active == tab_id:
            return
        if tabs.query(f"#tabs-list > #{tab_id}"):
            tabs.active = tab_id
        else:  # the tabs are not composed yet
            self.call_after_refresh(self.show_host, host)

    @on(Tabs.TabActivated)
    def show_chosen_host(self, event: Tabs.TabActivated) -> None:
        event.stop()
        if event.tab is not None and event.tab.id:
            index = int(event.tab.id.removeprefix("host-"))
            if index < len(self.hosts):
                self.show_host(self.hosts[index])

    def on_resize(self) -> None:
        wide = bool(self.hosts) and self.size.width >= self.MIN_COLUMN * len(self.hosts)
        self.set_class(wide, "-side-by-side")
        if wide != self.side_by_side:
            self.side_by_side = wide
            self.hold_hidden()

    def mark(self, host: str, state: str) -> None:
        if host in self.states:
            self.states[host] = state
            self.label(host)

    def mark_all(self, state: str) -> None:
        for host in self.hosts:
            self.mark(host, state)

    def label(self, host: str) -> None:
        state = self.states.get(host, "pending")
        icon = "●" if state == "running" else ICONS[state]
        style = {"ok": "$success", "failed": "$error", "running": "$warning"}.get(state, "")
        text = Content.assemble(host, " ", (icon, style))
        self.tabs[host].label = text
        self.logs[host].border_title = text

    def log_for(self, host: Optional[str]) -> Optional[Log]:
        return self.logs.get(host) if host is not None else None

"""Widgets that show one build live: the banner, the stage strip and the output panes.

They only translate engine events (:mod:`relconsole.events`) into widgets. The
screen that owns the build collects events from the engine's threads and hands
them to :meth:`BuildView.apply` in batches, so every pane gets at most one
``write_lines`` call per batch however fast a program prints.

Program and remote output only ever reaches ``Log`` widgets (plain text) or
``Content`` built from plain strings: a stray ``[`` prints as ``[``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import ContentSwitcher, Log, Static, Tab, Tabs

from relconsole.events import (
    BuildFinished,
    BuildStarted,
    CommitResolved,
    Event,
    HostFinished,
    Output,
    RunResult,
    StageFinished,
    StageStarted,
)
from relconsole.text import printable

#: Lines kept per pane; older lines scroll away.
MAX_LINES = 10_000

PER_HOST_STAGES = ("upload", "supervisor")
#: The stages of each action, in order, as the engine runs them.
STAGES = ("checkout", "check", "upload", "supervisor")  # TODO(reshape): from BuildStarted
ACTION_STAGES = {"build": STAGES, "rollback": ("switch", "supervisor")}
#: Stages shown only once they start (the automatic rollback after a failed verify).
EXTRA_STAGES = {"build": ("rollback",), "rollback": ()}
ALL_STAGES = STAGES + EXTRA_STAGES["build"]
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ICONS = {"pending": "·", "ok": "✔", "failed": "✘", "cancelled": "■", "skipped": "–"}


def short_sha(sha: Optional[str]) -> str:
    return sha[:7] if sha else ""


def spinner() -> str:
    return SPINNER[int(time.monotonic() * 8) % len(SPINNER)]


def seconds_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def make_log(id: Optional[str] = None) -> Log:
    return Log(max_lines=MAX_LINES, id=id)


# --------------------------------------------------------------------------- stage strip


class StageCell(Static):
    """One stage: its name and its state (pending, running with a clock, ok, failed...)."""

    DEFAULT_CSS = """
    StageCell {
        width: 1fr;
        height: 2;
        padding: 0 0 0 1;
        border-left: blank;
        background: $panel;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        &.-running { background: $warning 25%; color: $text; }
        &.-ok { background: $success 25%; color: $text; }
        &.-failed { background: $error 45%; color: $text; }
        &.-cancelled { background: $warning 15%; color: $text; }
        &.-selected { border-left: outer $accent; }
        &.-unused { display: none; }
    }
    StageStrip:focus-within StageCell.-selected {
        border-left: outer $accent;
        background-tint: $foreground 8%;
    }
    """

    state: reactive[str] = reactive("pending")

    def __init__(self, stage: str, number: int, *, unused: bool = False) -> None:
        super().__init__(
            id=f"stage-{stage}" if stage.isidentifier() else None,
            classes="-unused" if unused else None,
        )
        self.stage = stage
        self.number = number
        self.started: Optional[float] = None  # event timestamp (time.time())
        self.seconds: Optional[float] = None
        self.error: Optional[str] = None

    def reset(self) -> None:
        self.started = self.seconds = self.error = None
        self.state = "pending"
        self.refresh()

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(f"-{old}")
        self.add_class(f"-{new}")

    def render(self) -> Content:
        width = self.content_size.width
        if self.state == "running":
            icon = spinner()
            took = seconds_text(max(0.0, time.time() - (self.started or time.time())))
        else:
            icon = ICONS[self.state]
            took = seconds_text(self.seconds) if self.seconds is not None else ""
        word = "" if self.state == "ok" else self.state
        # Narrow cells (80 columns) drop the words the colour and icon already say.
        status = " ".join(part for part in (icon, word, took) if part)
        if len(status) > width:
            status = f"{icon} {took or word}"
        name = f"{self.number} {self.stage}"
        if len(name) > width:
            name = self.stage
        return Content.assemble((name, "bold"), "\n", status)

    def on_click(self) -> None:
        self.post_message(StageStrip.StageSelected(self.stage, by_user=True))


class StageStrip(Horizontal, can_focus=True):
    """The stages of the running action (checkout → check → upload → supervisor for a
    build, switch → supervisor for a rollback); also the tab bar of the output panes.

    A stage the engine starts that the strip does not know gets a cell at the end.
    """

    DEFAULT_CSS = """
    StageStrip { height: 2; }
    """
    BINDINGS = [
        Binding("left", "move(-1)", "Previous stage", show=False),
        Binding("right", "move(1)", "Next stage", show=False),
    ]

    class StageSelected(Message):
        """A stage's pane was chosen (by the operator, or by following the build)."""

        def __init__(self, stage: str, by_user: bool) -> None:
            super().__init__()
            self.stage = stage
            self.by_user = by_user

    selected: reactive[str] = reactive(STAGES[0])

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.cells: dict[str, StageCell] = {}

    def compose(self) -> ComposeResult:
        yield from self._make_cells(ACTION_STAGES["build"], EXTRA_STAGES["build"])

    def _make_cells(self, stages: Sequence[str], extras: Sequence[str]) -> list[StageCell]:
        self.cells = {
            stage: StageCell(stage, number, unused=stage in extras)
            for number, stage in enumerate((*stages, *extras), 1)
        }
        return list(self.cells.values())

    async def set_stages(self, stages: Sequence[str], extras: Sequence[str] = ()) -> None:
        """Show ``stages`` (all pending); ``extras`` only once they start."""
        if tuple(self.cells) == (*stages, *extras):
            self.reset(extras)
            return
        await self.remove_children()
        await self.mount_all(self._make_cells(stages, extras))
        self.watch_selected(self.selected)

    def add_stage(self, stage: str) -> StageCell:
        """A cell for a stage the engine started unannounced (mounted, not awaited)."""
        cell = self.cells[stage] = StageCell(stage, len(self.cells) + 1)
        self.mount(cell)
        return cell

    def cell(self, stage: str) -> Optional[StageCell]:
        return self.cells.get(stage)

    def shown(self) -> list[str]:
        """The stages on screen, in order (extras that have not started are hidden)."""
        return [stage for stage, cell in self.cells.items() if not cell.has_class("-unused")]

    def watch_selected(self, stage: str) -> None:
        for cell in self.cells.values():
            cell.set_class(cell.stage == stage, "-selected")

    def action_move(self, step: int) -> None:
        shown = self.shown()
        if not shown:
            return
        index = (shown.index(self.selected) + step) % len(shown) if self.selected in shown else 0
        self.post_message(self.StageSelected(shown[index], by_user=True))

    def reset(self, extras: Sequence[str] = ()) -> None:
        for cell in self.cells.values():
            cell.reset()
            cell.set_class(cell.stage in extras, "-unused")

    def tick(self) -> None:
        for cell in self.cells.values():
            if cell.state == "running":
                cell.refresh()

    def last_reached(self) -> Optional[str]:
        """The last stage that started, if any."""
        reached = [stage for stage, cell in self.cells.items() if cell.state != "pending"]
        return reached[-1] if reached else None


# --------------------------------------------------------------------------- banner


class BuildBanner(Static):
    """What is being built, and at the end an unmistakable verdict."""

    DEFAULT_CSS = """
    BuildBanner {
        height: auto;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
        &.-running { background: $warning 20%; color: $text; }
        &.-locked { background: $error 25%; color: $text; }
        &.-ok { background: $success; color: $text; text-style: bold;
                text-wrap: nowrap; text-overflow: ellipsis; }
        &.-failed { background: $error; color: $text; text-style: bold; }
        &.-cancelled { background: $warning; color: $text; text-style: bold; }
    }
    """

    shown: tuple[str, str] = ("", "")  # kind and plain text on screen

    def show(self, kind: str, content: Content) -> None:
        old_kind, old_text = self.shown
        text = content.plain
        if (kind, text) == self.shown:
            return
        for name in ("idle", "locked", "running", "ok", "failed", "cancelled"):
            self.set_class(name == kind, f"-{name}")
        self.shown = (kind, text)
        # A layout repaints the whole screen: skip it when the text keeps its shape (the
        # spinner turning), since it then wraps the same way at the same height.
        self.update(content, layout=kind != old_kind or not same_shape(old_text, text))


def same_shape(old: str, new: str) -> bool:
    """Same length, with spaces and line breaks at the same places."""
    return len(old) == len(new) and all(
        (a in " \n") == (b in " \n") for a, b in zip(old, new, strict=True)
    )


# --------------------------------------------------------------------------- per-host logs


class HostLogs(Vertical):
    """One ``Log`` per host: side by side when each gets enough width, else tabbed."""

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

    def __init__(self, stage: str, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.stage = stage
        self.hosts: list[str] = []
        self.logs: dict[str, Log] = {}
        self.states: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Tabs()
        yield Horizontal(id="host-logs")

    async def set_hosts(self, hosts: Sequence[str]) -> None:
        """Show ``hosts`` (all pending), with empty logs."""
        self.states = {h: "pending" for h in hosts}
        if list(hosts) == self.hosts:
            for log in self.logs.values():
                log.clear()
        else:
            self.hosts = list(hosts)
            self.logs = {h: make_log() for h in hosts}
            tabs = self.query_one(Tabs)
            await tabs.clear()
            for index, host in enumerate(hosts):
                await tabs.add_tab(Tab(host, id=f"host-{index}"))
            box = self.query_one("#host-logs")
            await box.remove_children()
            await box.mount_all(self.logs.values())
            if hosts:
                self.show_host(hosts[0])
            self.arrange_panes()
        for host in hosts:
            self.label(host)

    def show_host(self, host: str) -> None:
        for name, log in self.logs.items():
            log.set_class(name == host, "-shown")
        tab_id = f"host-{self.hosts.index(host)}"
        tabs = self.query_one(Tabs)
        if tabs.active != tab_id:
            tabs.active = tab_id

    @on(Tabs.TabActivated)
    def show_chosen_host(self, event: Tabs.TabActivated) -> None:
        event.stop()
        if event.tab is not None and event.tab.id:
            index = int(event.tab.id.removeprefix("host-"))
            if index < len(self.hosts):
                self.show_host(self.hosts[index])

    def on_resize(self) -> None:
        self.arrange_panes()

    def arrange_panes(self) -> None:
        wide = bool(self.hosts) and self.size.width >= self.MIN_COLUMN * len(self.hosts)
        self.set_class(wide, "-side-by-side")

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
        tab = self.query_one(Tabs).query(Tab).filter(f"#host-{self.hosts.index(host)}").first()
        tab.label = text
        self.logs[host].border_title = text

    def log_for(self, host: Optional[str]) -> Optional[Log]:
        return self.logs.get(host) if host is not None else None


# --------------------------------------------------------------------------- the whole view


class BuildView(Vertical):
    """Banner, stage strip and one output pane per stage, fed with engine events."""

    DEFAULT_CSS = """
    BuildView {
        height: 1fr;
        & > ContentSwitcher { height: 1fr; }
        & > ContentSwitcher > Log { height: 1fr; }
    }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.following = True  # show the running stage until the operator picks one
        self.action = "build"
        self.service: Optional[str] = None
        self.branch: Optional[str] = None
        self.hosts: tuple[str, ...] = ()
        self.commit: Optional[CommitResolved] = None
        self.finished: Optional[BuildFinished] = None
        #: stage -> its pane: a Log, or HostLogs for per-host stages.
        self.panes: dict[str, Log | HostLogs] = {}

    def compose(self) -> ComposeResult:
        yield BuildBanner(id="banner")
        yield StageStrip(id="stages")
        with ContentSwitcher(initial="pane-checkout", id="panes"):
            for stage in ALL_STAGES:
                yield self._new_pane(stage)

    def _new_pane(self, stage: str) -> Log | HostLogs:
        pane_id = f"pane-{stage}" if stage.isidentifier() else f"pane-{len(self.panes)}"
        pane = HostLogs(stage, id=pane_id) if stage in PER_HOST_STAGES else make_log(id=pane_id)
        self.panes[stage] = pane
        return pane

    def ensure_pane(self, stage: str):
        """The stage's pane, mounted if it is new (await the result to wait for that)."""
        if stage in self.panes:
            return None
        pane = self._new_pane(stage)
        return self.query_one(ContentSwitcher).mount(pane)

    # -- parts ------------------------------------------------------------------
    @property
    def banner(self) -> BuildBanner:
        return self.query_one(BuildBanner)

    @property
    def strip(self) -> StageStrip:
        return self.query_one(StageStrip)

    def stage_log(self, stage: str) -> Log:
        pane = self.panes[stage]
        assert isinstance(pane, Log), stage
        return pane

    def host_logs(self, stage: str) -> HostLogs:
        pane = self.panes[stage]
        assert isinstance(pane, HostLogs), stage
        return pane

    def targets(self, stage: str, host: Optional[str]) -> list[tuple[Log, str]]:
        """The pane(s) output of ``stage`` from ``host`` goes to, and its prefix there."""
        pane = self.panes.get(stage)
        prefix = f"{host}: " if host else ""
        if pane is None:  # output of a stage that never started: keep it, labelled
            prefix = f"{prefix}[{stage}] "
            pane = self.panes.get(self.strip.last_reached() or "") or self.panes[STAGES[0]]
            if isinstance(pane, HostLogs):
                return [(log, prefix) for log in pane.logs.values()]
            return [(pane, prefix)]
        if isinstance(pane, HostLogs):
            logs = pane.logs
            if host in logs:
                return [(logs[host], "")]
            if host is None:  # fleet-wide news ("release …"): every host's pane shows it
                return [(log, "") for log in logs.values()]
            return [(log, prefix) for log in list(logs.values())[:1]]  # a host it lacks
        return [(pane, prefix)]

    def route(self, event: Output) -> list[tuple[Log, str]]:
        """The pane(s) a line of output goes to, and the line as shown there."""
        return [(log, prefix + event.line) for log, prefix in self.targets(event.stage, event.host)]

    # -- selection --------------------------------------------------------------
    @on(StageStrip.StageSelected)
    def show_stage_pane(self, event: StageStrip.StageSelected) -> None:
        event.stop()
        self.select_stage(event.stage, by_user=event.by_user)

    def select_stage(self, stage: str, by_user: bool = True) -> None:
        pane = self.panes.get(stage)
        if pane is None:
            return
        if by_user:
            self.following = False
        self.strip.selected = stage
        self.query_one(ContentSwitcher).current = pane.id

    def select_stage_number(self, number: int) -> None:
        """Show the pane of the ``number``-th stage on the strip (1-based), if shown."""
        shown = self.strip.shown()
        if 1 <= number <= len(shown):
            self.select_stage(shown[number - 1])

    # -- lifecycle --------------------------------------------------------------
    def show_idle(
        self, service: str, branch: str, hosts: Sequence[str], lock: Optional[str] = None
    ) -> None:
        """The banner before the first run of this session: what ``b`` would do."""
        if self.finished is None and self.service is None:
            parts: list = [
                "Ready. ",
                ("b", "bold"),
                " builds ",
                (service, "bold"),
                f" ({branch}) on ",
                ", ".join(hosts) or "no hosts",
                ".",
            ]
            if lock:
                parts += [
                    "\n",
                    ("🔒 locked by ", "bold"),
                    printable(lock),
                    " — a build would be refused.",
                ]
            self.banner.show("locked" if lock else "idle", Content.assemble(*parts))

    async def begin(
        self, service: str, branch: str, hosts: Sequence[str], action: str = "build"
    ) -> None:
        """Clear everything for a new ``action`` ("build", "rollback") of ``service``."""
        self.action = action
        self.service, self.branch, self.hosts = service, branch, tuple(hosts)
        self.commit = self.finished = None
        self.following = True
        stages = ACTION_STAGES.get(action, STAGES)
        extras = EXTRA_STAGES.get(action, ())
        await self.strip.set_stages(stages, extras)
        for stage in (*stages, *extras):
            mounting = self.ensure_pane(stage)
            if mounting is not None:
                await mounting
        for pane in self.panes.values():
            if isinstance(pane, HostLogs):
                await pane.set_hosts(hosts)
            else:
                pane.clear()
        self.select_stage(stages[0], by_user=False)
        self.show_running()

    def show_running(self) -> None:
        commit = self.commit
        doing = "Rolling back" if self.action == "rollback" else "Building"
        parts: list = [(f"{spinner()} {doing} ", ""), (self.service or "", "bold")]
        if commit:
            parts += [" ", (short_sha(commit.sha), "bold"), " ", printable(commit.subject)]
        branch = f" ({self.branch})" if self.action == "build" else ""
        parts += [f"{branch} → {', '.join(self.hosts)}"]
        self.banner.show("running", Content.assemble(*parts))

    def tick(self) -> None:
        """Advance the clocks of running stages (~4×/s)."""
        self.strip.tick()
        if self.finished is None and self.service is not None:
            self.show_running()

    def apply(self, events: Iterable[Event]) -> Optional[BuildFinished]:
        """Show a batch of engine events; returns the build's end if it is in the batch."""
        lines: dict[Log, list[str]] = {}
        finished = None

        def add(log: Optional[Log], line: str) -> None:
            if log is not None:
                lines.setdefault(log, []).append(line)

        # Output is nearly every event: find its panes once per stage and host per batch.
        routes: dict[tuple, list[tuple[list[str], str]]] = {}
        for event in events:
            if type(event) is Output:
                route = routes.get((event.stage, event.host))
                if route is None:
                    route = routes[(event.stage, event.host)] = [
                        (lines.setdefault(log, []), prefix)
                        for log, prefix in self.targets(event.stage, event.host)
                    ]
                for bucket, prefix in route:
                    bucket.append(prefix + event.line if prefix else event.line)
                continue
            routes.clear()  # a stage starting may change where lines go
            if isinstance(event, StageStarted):
                self.start_stage(event)
            elif isinstance(event, StageFinished):
                self.finish_stage(event, add)
            elif isinstance(event, HostFinished):
                self.finish_host(event, add)
            elif isinstance(event, CommitResolved):
                self.commit = event
                self.show_running()
            elif isinstance(event, BuildStarted):
                self.hosts = event.hosts
                self.show_running()
            elif isinstance(event, BuildFinished):
                finished = event
                self.finish_build(event)
        for log, batch in lines.items():
            if not batch:
                continue
            log.write_lines([printable(line) or " " for line in batch[-MAX_LINES:]])
            if len(log.lines) >= MAX_LINES:
                # Textual 8.2's Log repaints only the new line numbers; once full, pruning
                # shifts every line under an unchanged scroll offset and nothing repaints.
                log.refresh()
        return finished

    def logs_of(self, stage: str) -> list[Log]:
        pane = self.panes.get(stage) or self.panes[STAGES[0]]
        return list(pane.logs.values()) if isinstance(pane, HostLogs) else [pane]

    def start_stage(self, event: StageStarted) -> None:
        cell = self.strip.cell(event.stage)
        if cell is None:  # a stage this view did not expect: give it a cell and a pane
            cell = self.strip.add_stage(event.stage)
            if self.ensure_pane(event.stage) is not None:
                pane = self.panes[event.stage]
                self.call_after_refresh(pane.scroll_end, animate=False)
        cell.started, cell.state = event.ts, "running"
        cell.remove_class("-unused")
        pane = self.panes.get(event.stage)
        if isinstance(pane, HostLogs):
            pane.mark_all("running")
        if self.following:
            self.select_stage(event.stage, by_user=False)

    def finish_stage(self, event: StageFinished, add) -> None:
        state = "ok" if event.ok else "cancelled" if event.cancelled else "failed"
        cell = self.strip.cell(event.stage)
        if cell is not None:
            cell.seconds, cell.error, cell.state = event.seconds, event.error, state
            cell.refresh()
        pane = self.panes.get(event.stage)
        hosts = pane if isinstance(pane, HostLogs) else None
        if hosts is not None:
            leftover = {"ok": "ok", "cancelled": "cancelled"}.get(state, "skipped")
            for host, host_state in hosts.states.items():
                if host_state == "running":  # never got a verdict of its own
                    hosts.mark(host, leftover)
        if state == "cancelled":
            for log in self.logs_of(event.stage):
                add(log, "■ cancelled")
        # Per-host panes already end with their host's own error; the stage's error
        # (every host's, joined) would put other hosts' words in a host's pane.
        elif state == "failed" and (hosts is None or "failed" not in hosts.states.values()):
            for log in self.logs_of(event.stage):
                add(log, f"✘ {event.stage} failed: {event.error}")

    def finish_host(self, event: HostFinished, add) -> None:
        state = "ok" if event.ok else "cancelled" if event.cancelled else "failed"
        pane = self.panes.get(event.stage)
        if isinstance(pane, HostLogs):
            pane.mark(event.host, state)
            if state != "ok":
                add(pane.log_for(event.host), f"✘ {event.error}")
            if state == "failed" and self.following:
                self.select_stage(event.stage, by_user=False)
                if event.host in pane.logs:
                    pane.show_host(event.host)
        elif state != "ok":  # e.g. a host that could not be reached while connecting
            for log in self.logs_of(event.stage):
                add(log, f"✘ {event.host}: {event.error}")

    def finish_build(self, event: BuildFinished) -> None:
        self.finished = event
        for cell in self.strip.cells.values():
            if cell.state == "running":  # the engine always closes stages; be safe anyway
                cell.state = "cancelled" if event.cancelled else "failed"
        self.banner.show(*verdict(event, self.commit, self.strip.last_reached(), self.action))
        if self.following and not event.ok:
            failed = next(
                (
                    stage
                    for stage, cell in self.strip.cells.items()
                    if cell.state in ("failed", "cancelled")
                ),
                None,
            )
            if failed:
                self.select_stage(failed, by_user=False)


def verdict(
    event: BuildFinished,
    commit: Optional[CommitResolved],
    stage: Optional[str],
    action: str = "build",
) -> tuple[str, Content]:
    """The banner's class and text for a finished build or rollback."""
    took = seconds_text(event.seconds)
    sha = event.sha[:12] if event.sha else ""
    rollback = action == "rollback"
    if event.ok:
        if rollback:
            return "ok", Content.assemble(
                ("↶ ROLLED BACK ", "bold"),
                (event.service, "bold"),
                " to ",
                (sha, "bold"),
                f" in {took}",
                f"\nrelease {event.release}",
            )
        subject = f" · “{printable(commit.subject)}”" if commit else ""
        return "ok", Content.assemble(
            ("✔ DEPLOYED ", "bold"),
            (event.service, "bold"),
            " ",
            (sha, "bold"),
            f" in {took}",
            f"\nrelease {event.release}{subject}",
        )
    what = "ROLLBACK" if rollback else "BUILD"
    if event.result is RunResult.LOCKED:
        return "failed", Content.assemble(
            (f"🔒 {what} REFUSED ", "bold"),
            printable(event.error or ""),
            " (here: ctrl+p → ",
            (f"Unlock {event.service}", "bold"),
            ")",
        )
    if event.cancelled:
        where = f" during {stage}" if stage else ""
        return "cancelled", Content.assemble(
            (f"■ {what} CANCELLED ", "bold"),
            (event.service, "bold"),
            f" {sha}".rstrip(),
            f"{where} after {took}",
        )
    return "failed", Content.assemble(
        (f"✘ {what} FAILED ", "bold"),
        (event.service, "bold"),
        f" {sha}".rstrip(),
        f" after {took}\n",
        printable(event.error or "unknown error"),
    )

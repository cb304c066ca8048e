"""The live view of one build or rollback: banner, stage strip, the rollout's batches, one
output pane per stage.

It only translates engine events (:mod:`relconsole.events`) into widgets. The app
collects events from the engine's threads and hands them to :meth:`BuildView.apply` in
batches, so every pane gets at most one ``write_lines`` call per batch however fast a
program prints. The stages come from the run's ``BuildStarted``; before any run the
view shows no stage at all.

Program and remote output only ever reaches ``Log`` widgets (plain text) or
``Content`` built from plain strings: a stray ``[`` prints as ``[``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Optional

from textual import on
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, Log

from relconsole.events import (
    BatchChanged,
    BatchPhase,
    BuildFinished,
    BuildStarted,
    CommitResolved,
    Event,
    HostFinished,
    Output,
    RolloutPlanned,
    StageFinished,
    StageStarted,
)
from relconsole.text import printable
from relconsole.ui.build_banner import BuildBanner, idle_text, running_text, verdict
from relconsole.ui.host_logs import MAX_LINES, HostLogs, make_log
from relconsole.ui.rollout_bar import RolloutBar
from relconsole.ui.run_state import per_host
from relconsole.ui.stage_strip import StageStrip

Pane = Log | HostLogs
AddLine = Callable[[Optional[Log], str], None]


class BuildView(Vertical):
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
        self.branch = ""
        self.hosts: tuple[str, ...] = ()
        self.commit: Optional[CommitResolved] = None
        #: What a run of action "run" runs on every host (its BuildStarted says).
        self.command: Optional[str] = None
        self.finished: Optional[BuildFinished] = None
        #: stage -> its pane: a Log, or HostLogs for per-host stages.
        self.panes: dict[str, Pane] = {}
        self._runs = 0  # panes get ids unique per run: the last run's may still be going

    def compose(self):
        yield BuildBanner(id="banner")
        yield StageStrip(id="stages")
        yield RolloutBar(id="rollout")
        with ContentSwitcher(initial="pane-idle", id="panes"):
            yield make_log(id="pane-idle")  # where output goes once a run starts

    @property
    def banner(self) -> BuildBanner:
        return self.query_one(BuildBanner)

    @property
    def strip(self) -> StageStrip:
        return self.query_one(StageStrip)

    @property
    def rollout(self) -> RolloutBar:
        return self.query_one(RolloutBar)

    @property
    def shown_pane(self) -> Optional[Pane]:
        """The pane on screen (before any run: an empty log)."""
        pane = self.query_one(ContentSwitcher).visible_content
        return pane if isinstance(pane, Log | HostLogs) else None

    def stage_log(self, stage: str) -> Log:
        pane = self.panes[stage]
        assert isinstance(pane, Log), stage
        return pane

    def host_logs(self, stage: str) -> HostLogs:
        pane = self.panes[stage]
        assert isinstance(pane, HostLogs), stage
        return pane

    # -- stages and panes -------------------------------------------------------
    def add_stage(self, stage: str) -> Pane:
        """A cell and a pane for ``stage``, mounted at once (not awaited)."""
        self.strip.add_stage(stage)
        pane_id = f"pane-{self._runs}-{len(self.panes)}"
        pane: Pane = (
            HostLogs(stage, self.hosts, id=pane_id) if per_host(stage) else make_log(pane_id)
        )
        pane.display = False
        self.panes[stage] = pane
        self.query_one(ContentSwitcher).mount(pane)
        if isinstance(pane, HostLogs):
            pane.mount_parts()
        return pane

    def logs_of(self, stage: str) -> list[Log]:
        pane = self.panes.get(stage) or self.fallback_pane()
        return list(pane.logs.values()) if isinstance(pane, HostLogs) else [pane]

    def fallback_pane(self) -> Pane:
        """Where output of a stage without a pane goes: the last stage reached's pane."""
        stage = self.strip.last_reached()
        if stage in self.panes:
            return self.panes[stage]
        return next(iter(self.panes.values()), self.query_one("#pane-idle", Log))

    def targets(self, stage: str, host: Optional[str]) -> list[tuple[Log, str]]:
        """The pane(s) output of ``stage`` from ``host`` goes to, and its prefix there."""
        pane = self.panes.get(stage)
        prefix = f"{host}: " if host else ""
        if pane is None:  # output of a stage that never started: keep it, labelled
            prefix = f"{prefix}[{stage}] "
            return [(log, prefix) for log in self.logs_of(stage)]
        if isinstance(pane, HostLogs):
            logs = pane.logs
            if host in logs:
                return [(logs[host], "")]
            if host is None:  # fleet-wide news ("release …"): every host's pane shows it
                return [(log, "") for log in logs.values()]
            return [(log, prefix) for log in list(logs.values())[:1]]  # a host it lacks
        return [(pane, prefix)]

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
        for other in self.panes.values():
            if isinstance(other, HostLogs):
                other.show_on_screen(other is pane)
        self.query_one(ContentSwitcher).current = pane.id

    def select_stage_number(self, number: int) -> None:
        """Show the pane of the ``number``-th stage on the strip (1-based), if shown."""
        shown = self.strip.shown()
        if 1 <= number <= len(shown):
            self.select_stage(shown[number - 1])

    # -- lifecycle --------------------------------------------------------------
    def show_idle(
        self,
        service: str,
        branch: str,
        hosts: Sequence[str],
        lock: Optional[str] = None,
        read_only: bool = False,
    ) -> None:
        """The banner before the first run of this session: what ``b`` would do."""
        if self.finished is None and self.service is None:
            self.banner.show(*idle_text(service, branch, hosts, lock, read_only))

    def begin(self, service: str, branch: str, hosts: Sequence[str], action: str = "build") -> None:
        """Clear everything for a new ``action`` ("build", "rollback") of ``service``; its
        stages come with its BuildStarted."""
        self._runs += 1
        self.action, self.service, self.branch, self.hosts = action, service, branch, tuple(hosts)
        self.commit = self.finished = None
        self.command = None
        self.following = True
        self.query_one(ContentSwitcher).current = "pane-idle"
        for pane in self.panes.values():
            pane.remove()
        self.panes = {}
        self.strip.clear()
        self.rollout.clear()
        self.show_running()

    def show_running(self) -> None:
        text = running_text(
            self.action, self.service or "", self.branch, self.hosts, self.commit, self.command
        )
        self.banner.show("running", text)

    def tick(self) -> None:
        """Advance the clocks of running stages (~4×/s)."""
        self.strip.tick()
        if self.finished is None and self.service is not None:
            self.show_running()
            self.rollout.tick()

    def apply(self, events: Iterable[Event]) -> Optional[BuildFinished]:
        """Show a batch of engine events; returns the run's end if it is in the batch."""
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
            if isinstance(event, BuildStarted):
                self.announce(event)
            elif isinstance(event, StageStarted):
                self.start_stage(event)
            elif isinstance(event, StageFinished):
                self.finish_stage(event, add)
            elif isinstance(event, HostFinished):
                self.finish_host(event, add)
            elif isinstance(event, RolloutPlanned):
                self.plan_rollout(event)
            elif isinstance(event, BatchChanged):
                self.change_batch(event, add)
            elif isinstance(event, CommitResolved):
                self.commit = event
                self.show_running()
            elif isinstance(event, BuildFinished):
                finished = event
                self.finish_run(event)
        for log, batch in lines.items():
            if not batch:
                continue
            log.write_lines([printable(line) or " " for line in batch[-MAX_LINES:]])
            if len(log.lines) >= MAX_LINES:
                # Textual 8.2's Log repaints only the new line numbers; once full, pruning
                # shifts every line under an unchanged scroll offset and nothing repaints.
                log.refresh()
        return finished

    def announce(self, event: BuildStarted) -> None:
        self.hosts = event.hosts
        self.command = event.command
        for stage in event.stages:
            if stage not in self.panes:
                self.add_stage(stage)
        if event.stages:
            self.select_stage(event.stages[0], by_user=False)
        self.show_running()

    def start_stage(self, event: StageStarted) -> None:
        if event.stage not in self.panes:  # a stage the run did not announce
            pane = self.add_stage(event.stage)
            self.call_after_refresh(pane.scroll_end, animate=False)
        cell = self.strip.cells[event.stage]
        cell.started, cell.state = event.ts, "running"
        pane = self.panes[event.stage]
        if isinstance(pane, HostLogs):
            pane.mark_all("running")
        if self.following:
            self.select_stage(event.stage, by_user=False)

    def plan_rollout(self, event: RolloutPlanned) -> None:
        self.rollout.plan(event)
        pane = self.panes.get(event.stage)
        if isinstance(pane, HostLogs):
            for batch in event.batches[1:]:  # later batches wait: their hosts are untouched
                for host in batch:
                    pane.mark(host, "pending")

    def change_batch(self, event: BatchChanged, add: AddLine) -> None:
        self.rollout.change(event)
        pane = self.panes.get(event.stage)
        if not isinstance(pane, HostLogs):
            return
        if event.phase is BatchPhase.SWITCHING:
            for host in event.hosts:
                pane.mark(host, "running")
        for host in event.hosts:  # each host's pane says where its batch is
            add(pane.log_for(host), f"── {event.describe()}")

    def finish_stage(self, event: StageFinished, add: AddLine) -> None:
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
                elif host_state == "pending" and state != "ok":  # a batch never reached
                    hosts.mark(host, "skipped")
        if state == "cancelled":
            for log in self.logs_of(event.stage):
                add(log, "■ cancelled")
        # Per-host panes already end with their host's own error; the stage's error
        # (every host's, joined) would put other hosts' words in a host's pane.
        elif state == "failed" and (hosts is None or "failed" not in hosts.states.values()):
            for log in self.logs_of(event.stage):
                add(log, f"✘ {event.stage} failed: {event.error}")

    def finish_host(self, event: HostFinished, add: AddLine) -> None:
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

    def finish_run(self, event: BuildFinished) -> None:
        self.finished = event
        for cell in self.strip.cells.values():
            if cell.state == "running":  # the engine always closes stages; be safe anyway
                cell.state = "cancelled" if event.cancelled else "failed"
        self.strip.tick()
        self.banner.show(
            *verdict(event, self.commit, self.strip.last_reached(), self.action, self.command)
        )
        if self.following and not event.ok:
            failed = next(
                (s for s, c in self.strip.cells.items() if c.state in ("failed", "cancelled")),
                None,
            )
            if failed:
                self.select_stage(failed, by_user=False)

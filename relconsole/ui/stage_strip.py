"""The stage strip: one cell per stage of the run (name, state, clock); also the tab bar
of the output panes (click a cell, or left/right when it has focus)."""

from __future__ import annotations

from typing import Optional

from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from relconsole.ui import clock

ICONS = {"pending": "·", "ok": "✔", "failed": "✘", "cancelled": "■", "skipped": "–"}
#: What the strip says before the first run: the stages come from the run itself.
IDLE_HINT = "stages show here when a build or rollback starts"


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
    }
    StageStrip:focus-within StageCell.-selected {
        border-left: outer $accent;
        background-tint: $foreground 8%;
    }
    """

    state: reactive[str] = reactive("pending")

    def __init__(self, stage: str, number: int) -> None:
        super().__init__(classes="-pending")
        self.stage = stage
        self.number = number
        self.started: Optional[float] = None  # event timestamp (time.time())
        self.seconds: Optional[float] = None
        self.error: Optional[str] = None

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(f"-{old}")
        self.add_class(f"-{new}")

    def render(self) -> Content:
        width = self.content_size.width
        if self.state == "running":
            icon = clock.spinner()
            now = clock.now()
            took = clock.seconds_text(max(0.0, now - (self.started or now)))
        else:
            icon = ICONS[self.state]
            took = clock.seconds_text(self.seconds) if self.seconds is not None else ""
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
    """The stages the run announced (BuildStarted.stages), in order; a stage the engine
    starts unannounced (the automatic rollback) gets a cell at the end."""

    DEFAULT_CSS = """
    StageStrip {
        height: 2;
        & > #stage-hint { width: 1fr; height: 2; padding: 0 1; color: $text-muted; }
    }
    """
    BINDINGS = [
        Binding("left", "move(-1)", "Previous stage", show=False),
        Binding("right", "move(1)", "Next stage", show=False),
    ]

    class StageSelected(Message):
        """A stage's pane was chosen (by the operator, or by following the run)."""

        def __init__(self, stage: str, by_user: bool) -> None:
            super().__init__()
            self.stage = stage
            self.by_user = by_user

    selected: reactive[Optional[str]] = reactive(None)

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.cells: dict[str, StageCell] = {}

    def compose(self):
        yield Static(Content(IDLE_HINT), id="stage-hint")

    def clear(self) -> None:
        """No stages (a new run begins; its BuildStarted names them)."""
        self.remove_children()
        self.cells = {}
        self.selected = None

    def add_stage(self, stage: str) -> StageCell:
        """A pending cell for ``stage`` at the end (mounted, not awaited)."""
        cell = self.cells[stage] = StageCell(stage, len(self.cells) + 1)
        self.mount(cell)
        return cell

    def cell(self, stage: str) -> Optional[StageCell]:
        return self.cells.get(stage)

    def shown(self) -> list[str]:
        """The stages on the strip, in order."""
        return list(self.cells)

    def watch_selected(self, stage: Optional[str]) -> None:
        for cell in self.cells.values():
            cell.set_class(cell.stage == stage, "-selected")

    def action_move(self, step: int) -> None:
        shown = self.shown()
        if not shown:
            return
        index = (shown.index(self.selected) + step) % len(shown) if self.selected in shown else 0
        self.post_message(self.StageSelected(shown[index], by_user=True))

    def tick(self) -> None:
        for cell in self.cells.values():
            if cell.state == "running":
                cell.refresh()

    def last_reached(self) -> Optional[str]:
        """The last stage that started, if any."""
        reached = [stage for stage, cell in self.cells.items() if cell.state != "pending"]
        return reached[-1] if reached else None

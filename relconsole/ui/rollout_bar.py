"""The rollout bar: the batches of the run's rollout as they go (which hosts, waiting,
switching, restarting, probing, pausing, done, failed, rolled back). Hidden until the
engine plans a rollout (:class:`~relconsole.events.RolloutPlanned`)."""

from __future__ import annotations

from textual.content import Content

from relconsole.events import BatchChanged, BatchPhase, RolloutPlanned
from relconsole.text import printable
from relconsole.ui import clock
from relconsole.ui.note import Note

_ICONS = {
    BatchPhase.WAITING: "·",
    BatchPhase.PAUSING: "…",
    BatchPhase.DONE: "✔",
    BatchPhase.FAILED: "✘",
    BatchPhase.CANCELLED: "■",
    BatchPhase.ROLLED_BACK: "↶",
}
_STYLES = {
    BatchPhase.DONE: "$success",
    BatchPhase.FAILED: "$error",
    BatchPhase.CANCELLED: "$warning",
    BatchPhase.ROLLED_BACK: "$warning",
}


class RolloutBar(Note):
    DEFAULT_CSS = """
    RolloutBar {
        height: auto;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
        display: none;
        &.-shown { display: block; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.batches: list[tuple[str, ...]] = []
        self.phases: list[BatchPhase] = []
        self.pause = 0.0

    def clear(self) -> None:
        self.batches, self.phases = [], []
        self.remove_class("-shown")

    def plan(self, event: RolloutPlanned) -> None:
        self.batches = list(event.batches)
        self.phases = [BatchPhase.WAITING] * len(self.batches)
        self.pause = event.pause
        self.add_class("-shown")
        self.show()

    def change(self, event: BatchChanged) -> None:
        if 1 <= event.batch <= len(self.phases):
            self.phases[event.batch - 1] = event.phase
            self.show()

    def phase_of(self, batch: int) -> BatchPhase:
        """The phase of batch ``batch`` (1-based) as shown."""
        return self.phases[batch - 1]

    def show(self) -> None:
        count = len(self.batches)
        head = "all hosts at once" if count == 1 else f"rolling, {count} batches"
        if self.pause and count > 1:
            head += f", {self.pause:g}s apart"
        cells = [Content.styled(head, "bold")]
        for number, (hosts, phase) in enumerate(zip(self.batches, self.phases, strict=True), 1):
            icon = _ICONS.get(phase) or clock.spinner()
            style = _STYLES.get(phase, "$warning" if phase not in _ICONS else "")
            cells.append(
                Content.assemble(
                    (f"{icon} {number} ", style), printable(", ".join(hosts)), f" {phase}"
                )
            )
        self.update(self.lines_of(cells, self.content_region.width))

    @staticmethod
    def lines_of(cells: list[Content], width: int) -> Content:
        """``cells`` three spaces apart, a cell moved whole to the next line when it would
        not fit in ``width`` (0: not laid out yet), so a batch is never split from its
        phase. A cell wider than a line is left to the widget's own wrapping."""
        parts: list = []
        used = 0
        for cell in cells:
            if parts and width and used + 3 + cell.cell_length > width:
                parts.append("\n")
                used = 0
            elif parts:
                parts.append("   ")
                used += 3
            parts.append(cell)
            used += cell.cell_length
        return Content.assemble(*parts)

    def on_resize(self) -> None:
        if self.batches:
            self.show()

    def tick(self) -> None:
        """Turn the spinner of a batch that is working."""
        if any(phase not in _ICONS for phase in self.phases):
            self.show()

"""Small modal dialogs."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitWhileBuilding(ModalScreen[bool]):
    """Asked when quitting during a build; dismisses with True for "cancel and quit"."""

    DEFAULT_CSS = """
    QuitWhileBuilding {
        align: center middle;
        & > Vertical {
            width: 70;
            max-width: 100%;
            height: auto;
            padding: 1 2;
            border: thick $warning;
            background: $surface;
        }
        & Static { width: 1fr; margin-bottom: 1; }
        & Horizontal { width: auto; height: auto; }
        & Button { margin: 0 1 0 0; }
    }
    """
    BINDINGS = [Binding("escape", "keep_building", "Keep building")]

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Content.assemble(
                "A build of ", (self.service, "bold"), " is running.\n",
                "Cancelling stops it between steps; hosts are never left half-switched."))
            with Horizontal():
                yield Button("Keep building", id="keep", variant="primary")
                yield Button("Cancel build and quit", id="cancel-and-quit", variant="error")

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    def action_keep_building(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#keep")
    def keep_building(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#cancel-and-quit")
    def cancel_and_quit(self) -> None:
        self.dismiss(True)

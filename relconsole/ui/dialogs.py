"""The console's yes/no questions: one :class:`ConfirmDialog`, named for each use, and
:class:`TypeToConfirm` for a service with ``confirm = true`` (its name is typed).

(The rollback question, which also chooses a release, is
:class:`relconsole.ui.rollback_dialog.RollbackDialog`.) What the dialogs quote from
elsewhere (a lock holder's words, program and host names) enters as plain text.
"""

from __future__ import annotations

from typing import Literal, Optional

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from relconsole.text import printable


class ConfirmDialog(ModalScreen[bool]):
    """A question with a yes and a no button; dismisses with True for yes.

    ``y`` and ``n`` answer it, escape says no; ``default`` has the focus. ``tone``
    colours the frame: "error" for what cannot be undone, "warning" otherwise.
    """

    DEFAULT_CSS = """
    ConfirmDialog {
        align: center middle;
        & > Vertical {
            width: 72; max-width: 100%; height: auto;
            border: thick $error; background: $surface; padding: 1 2;
        }
        &.-warning > Vertical { border: thick $warning; }
        & #question { text-style: bold; }
        & #why { color: $text-muted; margin: 1 0; }
        & Horizontal { height: auto; align: right middle; }
        & Button { margin-left: 2; }
    }
    """
    BINDINGS = [
        Binding("y", "dismiss(True)", "Yes"),
        Binding("n,escape", "dismiss(False)", "No"),
    ]

    def __init__(
        self,
        question: Content,
        text: Content,
        *,
        yes: str,
        no: str,
        default: Literal["yes", "no"] = "no",
        tone: Literal["error", "warning"] = "error",
    ) -> None:
        super().__init__(classes=f"-{tone}")
        self.question = question
        self.text = text
        self.labels = (yes, no)
        self.tone = tone
        self.default = default

    def compose(self):
        yes, no = self.labels
        with Vertical():
            yield Static(self.question, id="question")
            yield Static(self.text, id="why")
            with Horizontal():
                yield Button(f"{yes} (y)", variant=self.tone, id="yes")
                yield Button(f"{no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one(f"#{self.default}", Button).focus()

    @on(Button.Pressed)
    def answer_button(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class QuitWhileBuilding(ConfirmDialog):
    """Asked when quitting during a run: yes cancels it and quits once it has stopped."""

    def __init__(self, service: str, action: str = "build") -> None:
        super().__init__(
            Content.assemble(f"A {action} of ", (service, "bold"), " is running."),
            Content("Cancelling stops it between steps; hosts are never left half-switched."),
            yes=f"Cancel {action} and quit",
            no="Keep building" if action == "build" else "Keep rolling back",
            tone="warning",
        )


class ConfirmUnlock(ConfirmDialog):
    """Asked before removing a service's deploy lock on every host."""

    def __init__(self, service: str, holder: Optional[str]) -> None:
        held = (
            Content.assemble("Held by ", printable(holder), ".")
            if holder
            else Content("No lock was seen at the last poll.")
        )
        super().__init__(
            Content.assemble("Remove the deploy lock of ", (service, "bold"), " on every host?"),
            Content.assemble(
                held,
                "\nOnly when you know that run is gone: a build running elsewhere would "
                "lose its protection.",
            ),
            yes="Unlock",
            no="Cancel",
        )
        self.holder = holder  # their own words, as the last poll read them


class ConfirmStop(ConfirmDialog):
    """Asked before stopping programs: supervisord will not bring them back by itself."""

    def __init__(self, what: str) -> None:
        super().__init__(
            Content(f"Stop {what}?"),
            Content("Supervisor will not start them again until you do (S)."),
            yes="Stop",
            no="Cancel",
        )


class TypeToConfirm(ModalScreen[bool]):
    """Asked before a build, rollback or command of a service with ``confirm = true``:
    the go-ahead button works only once the service's name is typed; dismisses with
    True then, False on escape or Cancel."""

    DEFAULT_CSS = """
    TypeToConfirm {
        align: center middle;
        & > Vertical {
            width: 72; max-width: 100%; height: auto;
            border: thick $error; background: $surface; padding: 1 2;
        }
        & #question { text-style: bold; }
        & #why { color: $text-muted; margin: 1 0; }
        & Horizontal { height: auto; align: right middle; margin-top: 1; }
        & Button { margin-left: 2; }
    }
    """
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, service: str, doing: str) -> None:
        super().__init__()
        self.service = service
        self.doing = doing

    def compose(self):
        with Vertical():
            yield Static(
                Content.assemble(("confirm = true", "bold"), f" for {self.service}: {self.doing}?"),
                id="question",
            )
            yield Static(
                Content.assemble("Type ", (self.service, "bold"), " to go ahead."), id="why"
            )
            yield Input(placeholder=self.service, id="typed")
            with Horizontal():
                yield Button("Go ahead", variant="error", id="yes", disabled=True)
                yield Button("Cancel (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed, "#typed")
    def check_name(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = event.value.strip() != self.service

    @on(Input.Submitted, "#typed")
    def submit(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.service:
            self.dismiss(True)

    @on(Button.Pressed)
    def answer_button(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

"""Which command to run on every host of a service (palette: "Run command on SVC").

The line is split as a shell would split it (``shlex``) and each argument is quoted
again for the remote shell, never re-split there: ``grep 'a b' log`` greps for
``a b``. Pipes and redirections are arguments like any other; for them, run
``sh -c '…'``. Dismisses with ``(argv, sudo)``, or None.
"""

from __future__ import annotations

import shlex
from typing import Optional

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static

from relconsole.config import Service


class RunCommandDialog(ModalScreen[Optional[tuple[list[str], bool]]]):
    DEFAULT_CSS = """
    RunCommandDialog {
        align: center middle;
        & > Vertical {
            width: 80; max-width: 100%; height: auto;
            border: thick $warning; background: $surface; padding: 1 2;
        }
        & #run-question { text-style: bold; }
        & #run-why { color: $text-muted; margin-bottom: 1; }
        & #run-problem { color: $error; display: none; }
        & Horizontal { height: auto; align: right middle; margin-top: 1; }
        & Button { margin-left: 2; }
    }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service

    def compose(self):
        service = self.service
        with Vertical():
            yield Static(
                Content.assemble("Run a command on every host of ", (service.name, "bold")),
                id="run-question",
            )
            yield Static(
                Content(
                    f"{', '.join(service.hosts)}, in parallel, inside {service.path}/current. "
                    "Arguments are split as a shell splits them and passed as they are "
                    "(for a pipe: sh -c '…')."
                ),
                id="run-why",
            )
            yield Input(placeholder="e.g. tail -n 20 log/app.log", id="run-command")
            yield Static(id="run-problem", markup=False)
            yield Checkbox("as root (sudo -n)", id="run-sudo")
            with Horizontal():
                yield Button("Run", variant="warning", id="run")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#run-command", Input).focus()

    def argv(self) -> Optional[list[str]]:
        """The typed line as arguments, or None (and why, on screen)."""
        problem = self.query_one("#run-problem", Static)
        try:
            argv = shlex.split(self.query_one("#run-command", Input).value)
        except ValueError as exc:  # an unclosed quote
            problem.update(f"✘ {exc}")
            problem.display = True
            return None
        if not argv:
            problem.update("✘ type a command")
            problem.display = True
            return None
        problem.display = False
        return argv

    @on(Input.Submitted, "#run-command")
    @on(Button.Pressed, "#run")
    def run(self) -> None:
        argv = self.argv()
        if argv is not None:
            self.dismiss((argv, self.query_one("#run-sudo", Checkbox).value))

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)

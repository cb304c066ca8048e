"""The main screen's right side: the Build/Cancel button, the branch field and the live
build view. Runs are started and cancelled through the app; this panel shows them."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Static

from relconsole.config import Service, validate_branch
from relconsole.ui.build_view import BuildView
from relconsole.ui.console import Console
from relconsole.ui.run_state import RunState

#: Seconds of no typing before another branch's pending commits are read.
BRANCH_SETTLES = 0.8


class BranchValidator(Validator):
    def validate(self, value: str) -> ValidationResult:
        try:
            validate_branch(value.strip())
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


class BuildPanel(Vertical):
    app: Console

    class BranchEdited(Message):
        """Typing in the branch field paused; ``branch`` is its value if valid."""

        def __init__(self, branch: Optional[str]) -> None:
            super().__init__()
            self.branch = branch

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.service: Optional[Service] = None  # the selected one: what b builds
        self._branch_timer: Optional[Timer] = None

    def compose(self):
        with Horizontal(id="build-bar"):
            yield Button("▶ Build", id="build", variant="success")
            yield Input(
                id="branch",
                placeholder="branch",
                validators=[BranchValidator()],
                validate_on=["changed", "submitted"],
            )
        yield Static(id="branch-error", markup=False)
        yield BuildView(id="build-view")

    def on_mount(self) -> None:
        self.query_one("#branch").border_title = "branch"
        self.clock_timer = self.set_interval(0.25, self.view.tick, pause=True)

    @property
    def view(self) -> BuildView:
        return self.query_one(BuildView)

    @property
    def branch_input(self) -> Input:
        return self.query_one("#branch", Input)

    def branch_value(self) -> Optional[str]:
        try:
            return validate_branch(self.branch_input.value.strip())
        except ValueError:
            return None

    def show_service(self, service: Service) -> None:
        """``service`` was selected: its branch in the field, what b would do."""
        self.service = service
        self.branch_input.value = service.branch
        self.show_branch_error(None)
        self.update_button()
        self.show_idle()

    def show_idle(self, branch: Optional[str] = None) -> None:
        service = self.service
        if service is None or self.app.active_run is not None:
            return
        self.view.show_idle(
            service.name,
            branch if branch is not None else self.branch_value() or service.branch,
            service.hosts,
            self.app.fleet.lock_holder(service.name),
            read_only=self.app.read_only,
        )

    # -- the branch field -------------------------------------------------------
    @on(Input.Changed, "#branch")
    def follow_branch_field(self, event: Input.Changed) -> None:
        self.show_branch_error(None)
        self.show_idle(event.value.strip())
        # Another branch has other pending commits: read them once typing pauses.
        if self._branch_timer is not None:
            self._branch_timer.stop()
        self._branch_timer = self.set_timer(
            BRANCH_SETTLES, lambda: self.post_message(self.BranchEdited(self.branch_value()))
        )

    def show_branch_error(self, message: Optional[str]) -> None:
        error = self.query_one("#branch-error", Static)
        error.update(Content(message or ""))
        error.display = bool(message)

    # -- building ---------------------------------------------------------------
    @on(Button.Pressed, "#build")
    def build_or_cancel(self) -> None:
        if self.app.active_run is not None:
            self.app.cancel_run()
        else:
            self.build()

    @on(Input.Submitted, "#branch")
    def build(self) -> None:
        """Build the selected service from the branch field (the app refuses during a run)."""
        if self.app.refuse_while_running():
            return
        if self.service is None:
            self.notify("no service configured", severity="error")
            return
        try:
            branch = validate_branch(self.branch_input.value.strip())
        except ValueError as exc:
            self.show_branch_error(f"✘ {exc}")
            self.notify(str(exc), title="Not building", severity="error", markup=False)
            self.branch_input.focus()
            return
        self.app.start_build(self.service.name, branch)

    def follow_run(self, run: RunState) -> None:
        self.view.begin(run.service, run.branch, run.hosts, run.action)
        self.clock_timer.resume()
        self.update_button()

    def run_ended(self) -> None:
        self.clock_timer.pause()
        self.update_button()

    def update_button(self) -> None:
        # Never disabled while focused widgets may be on it: disabling moves the focus away.
        button = self.query_one("#build", Button)
        run = self.app.active_run
        if run is not None:
            button.label = "Cancelling…" if run.cancelling else "■ Cancel"
            button.variant = "warning" if run.cancelling else "error"
        elif self.app.read_only:
            button.label = "read-only"
            button.variant = "default"
            button.disabled = True
        else:
            name = self.service.name if self.service else None
            button.label = f"▶ Build {name}" if name else "▶ Build"
            button.variant = "success"
            button.disabled = name is None

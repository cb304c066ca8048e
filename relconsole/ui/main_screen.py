"""The main screen: the fleet column (services, hosts, what is not deployed) on the left,
the build panel (button, branch, the live run) on the right.

The screen only composes the two and carries news between them: the selection and the
locks to the panel, the branch field to the pending list. The run itself belongs to the
app, which tells this screen when one starts, hands it the engine's events in
batches, and says when it has ended.
"""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal
from textual.events import ScreenResume
from textual.screen import Screen
from textual.widgets import Button, Static

from relconsole.events import Event
from relconsole.ui.build_panel import BuildPanel
from relconsole.ui.build_view import BuildView
from relconsole.ui.console import Console
from relconsole.ui.fleet_column import FleetColumn
from relconsole.ui.footer import Footer
from relconsole.ui.run_state import RunState
from relconsole.ui.services_table import ServiceTable


class MainScreen(Screen):
    app: Console

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]

    BINDINGS = [
        Binding("b", "build", "Build"),
        Binding("R,shift+r", "rollback", "Roll back", key_display="R"),
        Binding("P,shift+p", "plan", "Plan", key_display="P"),
        Binding("h", "history", "History"),
        Binding("f", "fetch", "Fetch"),
        Binding("escape", "cancel_run", "Cancel"),
        *[
            Binding(str(n), f"show_stage({n})", f"stage {n} output", show=False)
            for n in range(1, 7)
        ],
    ]

    def __init__(self) -> None:
        super().__init__(id="main")

    def compose(self):
        if self.app.read_only:
            yield Static(
                "READ-ONLY console: nothing can be changed here (no build, rollback, "
                "unlock, command or process action)",
                id="read-only",
                markup=False,
            )
        with Horizontal(id="body"):
            yield FleetColumn(id="side")
            yield BuildPanel(id="work")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ServiceTable).focus()

    @property
    def fleet_column(self) -> FleetColumn:
        return self.query_one(FleetColumn)

    @property
    def build_panel(self) -> BuildPanel:
        return self.query_one(BuildPanel)

    @property
    def build_view(self) -> BuildView:
        return self.build_panel.view

    # -- between the column and the panel ---------------------------------------
    @on(FleetColumn.ServiceSelected)
    def show_selected_service(self, message: FleetColumn.ServiceSelected) -> None:
        self.build_panel.show_service(self.app.config.services[message.service])

    @on(FleetColumn.LocksRead)
    def show_locks(self) -> None:
        self.build_panel.show_idle()

    @on(BuildPanel.BranchEdited)
    def follow_branch(self, message: BuildPanel.BranchEdited) -> None:
        self.fleet_column.follow_branch(message.branch)

    @on(ServiceTable.RowSelected, "#services")
    def focus_build_button(self) -> None:
        self.query_one("#build", Button).focus()

    def on_screen_resume(self, event: ScreenResume) -> None:
        self.fleet_column.resume_polls()

    # -- the run (told by the app) ----------------------------------------------
    def follow_run(self, run: RunState) -> None:
        self.fleet_column.select_service(run.service)
        self.fleet_column.show_running(run)
        self.build_panel.follow_run(run)
        self.refresh_bindings()

    def show_run_events(self, batch: list[Event]) -> None:
        self.build_view.apply(batch)

    def show_cancelling(self) -> None:
        self.build_panel.update_button()

    def run_ended(self, run: RunState) -> None:
        self.fleet_column.run_ended(run)
        self.build_panel.run_ended()
        self.refresh_bindings()

    def unlock_answered(self, service: str, ok: bool) -> None:
        self.fleet_column.unlock_answered(service, ok)

    # -- keys -------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("build", "rollback"):
            return self.app.active_run is None and not self.app.read_only
        if action == "cancel_run":
            return self.app.active_run is not None
        return True

    def action_build(self) -> None:
        self.build_panel.build()

    def action_rollback(self) -> None:
        if self.fleet_column.selected:
            self.app.ask_rollback(self.fleet_column.selected)

    def action_cancel_run(self) -> None:
        self.app.cancel_run()

    def action_plan(self) -> None:
        if self.fleet_column.selected:
            branch = self.build_panel.branch_value() if self.build_panel.service else None
            self.app.show_plan(self.fleet_column.selected, branch)

    def action_history(self) -> None:
        self.app.show_history(self.fleet_column.selected)

    def action_fetch(self) -> None:
        self.fleet_column.fetch()

    def action_show_stage(self, number: int) -> None:
        self.build_view.select_stage_number(number)

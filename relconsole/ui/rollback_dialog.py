"""The rollback question: what each host runs, where it would go back to, and the choice
among the releases every host holds (the previous one preselected)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from relconsole.text import printable

if TYPE_CHECKING:
    from relconsole.config import Config
    from relconsole.hosts.connect import OnHost
    from relconsole.rollback import RollbackPlan


class RollbackDialog(ModalScreen[Optional[str]]):
    """Dismisses with the release to roll back to, or None. Styled in app.tcss."""

    BINDINGS = [
        Binding("y", "confirm", "Roll back"),
        Binding("n,escape", "dismiss(None)", "Cancel"),
    ]

    class Read(Message):
        def __init__(self, plan: RollbackPlan, subjects: dict[str, str]) -> None:
            super().__init__()
            self.plan = plan
            self.subjects = subjects

    def __init__(
        self, config: Config, service: str, on_host: OnHost, lock: Optional[str] = None
    ) -> None:
        super().__init__(id="rollback-dialog")
        self.holder = lock  # who held the service's deploy lock at the last poll
        self.config = config
        self.service = config.services[service]
        self.on_host = on_host
        self.plan: Optional[RollbackPlan] = None

    def compose(self) -> ComposeResult:
        hosts = ", ".join(self.service.hosts)
        with Vertical():
            yield Static(
                Content.assemble("Roll back ", (self.service.name, "bold"), " on ", hosts, "?"),
                id="rb-question",
            )
            yield Static(Content(f"reading the releases on {hosts}…"), id="rb-hosts")
            yield OptionList(id="rb-targets", markup=False)
            yield Static(id="rb-problem", markup=False)
            yield Static(
                Content(
                    "Every host switches to it, or none does; then supervisor "
                    "restarts the programs and checks they stay up."
                ),
                id="rb-why",
            )
            with Horizontal():
                yield Button("Roll back (y)", variant="warning", id="yes", disabled=True)
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#rb-targets").display = False
        self.query_one("#no", Button).focus()
        self.read()

    @work(thread=True, exit_on_error=False)
    def read(self) -> None:
        from relconsole.rollback import plan_rollback, read_releases, release_subject
        from relconsole.stages.checkout import workspace_path

        hosts = self.config.hosts_of(self.service)
        plan = plan_rollback(read_releases(self.service, hosts, self.on_host, self.config.settings))
        workspace = workspace_path(self.config.settings.state_dir, self.service.name)
        subjects = {r: s for r in plan.candidates if (s := release_subject(workspace, r))}
        self.post_message(self.Read(plan, subjects))

    @on(Read)
    def show_plan(self, message: Read) -> None:
        self.plan = plan = message.plan
        lines = []
        for h in plan.hosts:
            if h.error:
                lines.append(Content.assemble(f"{h.host}: ", (printable(h.error), "$error")))
            else:
                lines.append(
                    Content(
                        f"{h.host}: runs {h.current or 'nothing'}"
                        f"{' → ' + h.previous if h.previous else ''}"
                    )
                )
        self.query_one("#rb-hosts", Static).update(Content("\n").join(lines))
        problem = None
        if plan.errors:
            problem = "Every host must answer before a rollback; nothing will be switched."
        elif not plan.candidates:
            problem = "No earlier release is on every host: there is nothing to roll back to."
        elif plan.drift:
            problem = "The hosts run different releases: choose the one they should all run."
        if self.holder and not plan.errors:
            problem = "\n".join(
                filter(
                    None,
                    [
                        problem,
                        f"🔒 locked by {printable(self.holder)}: the rollback will be refused.",
                    ],
                )
            )
        targets = self.query_one("#rb-targets", OptionList)
        if plan.candidates and not plan.errors:
            targets.add_options(
                [
                    Option(
                        Content.assemble(
                            (release, "bold"),
                            f"  {message.subjects[release]}" if release in message.subjects else "",
                            ("  (previous)", "$success") if release == plan.default else "",
                        ),
                        id=release,
                    )
                    for release in plan.candidates
                ]
            )
            targets.display = True
            targets.highlighted = plan.candidates.index(plan.default) if plan.default else 0
            targets.focus()
        shown = self.query_one("#rb-problem", Static)
        shown.update(Content(problem or ""))
        shown.display = bool(problem)
        self.query_one("#rb-why").display = self.target is not None
        if self.target is None:
            self.query_one("#no", Button).focus()
        self.show_choice()

    @on(OptionList.OptionHighlighted, "#rb-targets")
    def show_choice(self) -> None:
        button = self.query_one("#yes", Button)
        target = self.target
        button.disabled = target is None
        button.label = f"Roll back to {target} (y)" if target else "Roll back (y)"
        button.refresh(layout=True)  # Button.label does not re-measure the width itself

    @on(OptionList.OptionSelected, "#rb-targets")
    def go_to_button(self) -> None:
        self.query_one("#yes", Button).focus()

    @property
    def target(self) -> Optional[str]:
        plan = self.plan
        if plan is None or plan.errors or not plan.candidates:
            return None
        targets = self.query_one("#rb-targets", OptionList)
        if targets.highlighted is None:
            return None
        return plan.candidates[targets.highlighted]

    def action_confirm(self) -> None:
        if self.target is not None:
            self.dismiss(self.target)

    @on(Button.Pressed, "#yes")
    def confirm(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#no")
    def cancel(self) -> None:
        self.dismiss(None)

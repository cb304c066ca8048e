"""The plan view (``P``, palette "Plan SVC"): what a build would do, before it does it.

``--plan`` in the console: the sha it would deploy, what each host runs (hosts that
differ shown apart), the commits and diffstat, the diff of every installed file that
would change, the programs supervisor would update or restart, and the deploy lock.
Read in a thread worker over the console's own connections, taking no lock. ``b``
builds from here; a service with ``confirm = true`` opens this view before any build
and wants its name typed after it. The text is the headless plan's
(:func:`relconsole.plan_text.plan_text`), coloured here line by line as plain text.
"""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Static

from relconsole.config import Service
from relconsole.plan import Plan, read_plan
from relconsole.plan_text import plan_text
from relconsole.ui.console import Console
from relconsole.ui.footer import Footer


def line_style(line: str) -> str:
    """How one line of the plan's text is drawn."""
    body = line.lstrip(" ")
    indent = len(line) - len(body)
    if line.startswith("==>"):
        return "bold"
    if "NOT READ" in line or line.startswith("the build would fail") or "HELD" in line:
        return "bold red"
    if "DIFFERS" in line:
        return "bold yellow"
    if indent == 4 and body.startswith(("+++", "---")):
        return "bold"
    if indent == 4 and body.startswith("+"):
        return "green"
    if indent == 4 and body.startswith("-"):
        return "red"
    if indent == 4 and body.startswith("@@"):
        return "cyan"
    if indent == 0 and line.endswith(":"):
        return "bold underline"
    if indent == 2 and any(f": {c} on " in line for c in ("changed", "added", "removed")):
        return "bold yellow"
    return ""


def plan_content(plan: Plan) -> Text:
    """The plan as one Text, each line styled by what it is; never parsed as markup."""
    text = Text()
    for line in plan_text(plan).splitlines():
        text.append(line + "\n", style=line_style(line))
    text.rstrip()
    return text


class PlanScreen(Screen[None]):
    app: Console

    BINDINGS = [
        Binding("b", "build", "Build"),
        Binding("g", "read", "Read again"),
        Binding("escape,q", "app.pop_screen", "Back"),
    ]

    class Read(Message):
        def __init__(self, plan: Optional[Plan], error: Optional[str] = None) -> None:
            super().__init__()
            self.plan = plan
            self.error = error

    def __init__(self, service: Service, branch: str) -> None:
        super().__init__()
        self.service = service
        self.branch = branch
        self.plan: Optional[Plan] = None

    def compose(self):
        yield Header()
        yield Static(id="plan-status", markup=False)
        with VerticalScroll(id="plan-scroll"):
            yield Static(id="plan-body", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"plan: build {self.service.name} ({self.branch})"
        self.query_one("#plan-scroll").focus()
        self.action_read()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> Optional[bool]:
        if action == "build":
            return not self.app.read_only and self.app.active_run is None
        return True

    def action_read(self) -> None:
        self.query_one("#plan-status", Static).update(
            f"reading what a build of {self.service.name} ({self.branch}) would do…"
        )
        self.read_in_thread()

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def read_in_thread(self) -> None:
        app = self.app
        try:
            plan = read_plan(app.config, self.service.name, self.branch, on_host=app.poller.on_host)
        except Exception as exc:  # a bug must not leave the view saying "reading"
            self.post_message(self.Read(None, f"the plan failed: {type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Read(plan))

    def on_plan_screen_read(self, message: Read) -> None:
        status = self.query_one("#plan-status", Static)
        self.plan = message.plan
        if message.plan is None:
            status.update(message.error or "the plan failed")
            return
        plan = message.plan
        read = "everything read" if plan.complete else f"NOT READ: {', '.join(plan.unreadable)}"
        if not plan.complete and not plan.unreadable:
            read = "the workspace could not be read"
        ask = (
            f" · confirm = true: b, then type {self.service.name}, builds"
            if self.service.confirm
            else " · b builds"
        )
        status.update(
            Text(f"{read}{'' if self.app.read_only else ask} · g reads again · esc goes back")
        )
        status.set_class(not plan.complete, "-incomplete")
        self.query_one("#plan-body", Static).update(plan_content(plan))

    def action_build(self) -> None:
        app = self.app
        if app.refuse_read_only("Build") or app.refuse_while_running():
            return
        service, branch = self.service.name, self.branch
        if not self.service.confirm:
            self.dismiss()
            app.start_build(service, branch)
            return

        def go() -> None:
            if app.screen is self:
                self.dismiss()
            app.start_build(service, branch, confirmed=True)

        app.ask_typed_name(service, f"build {branch}", go)

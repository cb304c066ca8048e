"""The one build or rollback the console runs: what it is, how far it got, how to stop it.

The app owns it (:class:`relconsole.ui.console.Console`): it runs the engine in a thread
worker whose sink is ``events.append`` (cheap and thread-safe, called from the engine's
threads) and drains ``events`` about 30 times a second into the main screen. Screens
and the command palette read this object; none of them reaches into another. No Textual
here.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Optional

from relconsole.events import (
    BuildFinished,
    BuildStarted,
    Event,
    Output,
    RunResult,
    Stage,
    StageStarted,
)
from relconsole.text import printable

Severity = Literal["information", "warning", "error"]


@dataclass(eq=False)
class RunState:
    """A run from the moment it is asked for until its :class:`BuildFinished` is shown."""

    service: str
    action: str  # "build", "rollback" or "run", as BuildStarted.action says it
    branch: str
    hosts: tuple[str, ...]
    cancel: threading.Event = field(default_factory=threading.Event)
    #: What the engine sent and the screen has not shown yet.
    events: deque[Event] = field(default_factory=deque)
    #: The stages BuildStarted announced, then any the engine started unannounced.
    stages: tuple[str, ...] = ()
    finished: Optional[BuildFinished] = None
    #: The operator asked to quit: the app exits once the run has stopped.
    quit_when_finished: bool = False
    #: Set when the engine's thread has returned (its clean-up done), shown or not.
    engine_done: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def cancelling(self) -> bool:
        return self.running and self.cancel.is_set()

    def take(self, limit: int) -> list[Event]:
        """Up to ``limit`` events not shown yet, oldest first; notes the stages and the end."""
        batch: list[Event] = []
        pop = self.events.popleft
        try:
            for _ in range(limit):
                batch.append(pop())
        except IndexError:
            pass
        for event in batch:
            if type(event) is not Output:  # nearly every event is output: skip it cheaply
                self.note(event)
        return batch

    def note(self, event: Event) -> None:
        if isinstance(event, BuildStarted):
            self.stages, self.hosts = tuple(event.stages), event.hosts
        elif isinstance(event, BuildFinished):
            self.finished = event
        elif isinstance(event, StageStarted) and event.stage not in self.stages:
            self.stages += (event.stage,)

    def notice(self) -> tuple[str, str, Severity]:
        """Title, text and severity of the notification that says how the run ended."""
        event, action = self.finished, self.action
        assert event is not None
        if action == "run":
            if event.ok:
                return "Command done", f"every host of {event.service} exited 0", "information"
            if event.cancelled:
                return "Command cancelled", "the commands were killed", "warning"
            return "Command failed", printable(event.error or "unknown error"), "error"
        if event.ok and action == "rollback":
            return (
                "Rolled back",
                f"{event.service} runs release {event.release} again",
                "information",
            )
        if event.ok:
            sha = f" {event.sha[:7]}" if event.sha else ""
            return "Build OK", f"{event.service}{sha} deployed as {event.release}", "information"
        if event.cancelled:
            return f"{action.title()} cancelled", f"{event.service} {action} cancelled", "warning"
        title = (
            f"{event.service} is locked"
            if event.result is RunResult.LOCKED
            else f"{action.title()} of {event.service} failed"
        )
        return title, printable(event.error or "unknown error"), "error"


def per_host(stage: str) -> bool:
    """Whether ``stage`` gets a pane per host (a stage the engine does not name: no)."""
    try:
        return Stage(stage).per_host
    except ValueError:
        return False

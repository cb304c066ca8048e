"""The commits a build would deploy: what the hosts run up to the branch's tip.

Reading them needs a ``git fetch`` in the service's workspace: the read runs in a thread
worker when what it depends on changes (the branch, what the hosts run), at most every
minute otherwise, and never during a run of that service (the run fetches there too).
"""

from __future__ import annotations

import time
from typing import Optional

from textual import on, work
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message

from relconsole.deployed import Deployed, Pending, deployed_base, read_pending
from relconsole.stages.checkout import workspace_path
from relconsole.text import printable
from relconsole.ui.console import Console
from relconsole.ui.note import Note

#: Seconds between fetches while nothing else changes (f: now).
PENDING_EVERY = 60.0


class PendingList(VerticalScroll, can_focus=True):
    DEFAULT_CSS = """
    PendingList {
        height: 1fr;
        & > Static { height: auto; }
    }
    """

    app: Console

    class Read(Message):
        def __init__(self, service: str, key: tuple, pending: Optional[Pending]) -> None:
            super().__init__()
            self.service = service
            self.key = key
            self.pending = pending  # None: not read (a run holds the workspace)

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self.body = Note()
        self.service: Optional[str] = None  # the one shown
        self._shown: Optional[Pending] = None
        #: service -> the last list read, what it was read for (branch, base, note), when.
        self.pending: dict[str, Pending] = {}
        self.read_for: dict[str, tuple] = {}
        self.read_at: dict[str, float] = {}

    def compose(self):
        yield self.body

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(self._shown, force=True)

    # -- reading ----------------------------------------------------------------
    def follow(self, service: str) -> None:
        """Show ``service``'s list (or that it is being read)."""
        self.service = service
        pending = self.pending.get(service)
        if pending is not None:
            self.show(pending)
        else:
            self.show_waiting("reading what the hosts run…")

    def forget(self, service: str) -> None:
        """Read ``service``'s list again at the next refresh, whatever changed."""
        self.read_for.pop(service, None)

    def refresh_list(self, service: str, branch: str, force: bool = False) -> None:
        """Read ``service``'s list of ``branch`` again if what it depends on changed."""
        facts = self.app.fleet
        deployed = list(facts.deployed.get(service, {}).values())
        shown = service == self.service
        if not deployed:
            if shown and service in facts.deployed:
                self.show_waiting(
                    "no host answered: what runs there, and so what is pending, is unknown"
                )
            return
        base, note = deployed_base(deployed)
        key = (branch, base, note)
        if not force and self.read_for.get(service) == key:
            return
        run = self.app.active_run
        if run is not None and run.service == service:
            self.read_for.pop(service, None)  # read again after the run
            return
        self.read_for[service] = key
        self.read_at[service] = time.monotonic()
        if shown and service not in self.pending:
            self.show_waiting(f"fetching {branch}…")
        self.read_in_thread(service, branch, deployed, key)

    def stale(self, service: str) -> bool:
        return time.monotonic() - self.read_at.get(service, 0) > PENDING_EVERY

    @work(thread=True, group="pending", exclusive=True, exit_on_error=False)
    def read_in_thread(
        self, service: str, branch: str, deployed: list[Deployed], key: tuple
    ) -> None:
        lock = self.app.workspace_lock(service)
        # A build holds it until run_build returns, a moment after its end is on screen.
        if not lock.acquire(timeout=5):  # still building: read again after that build
            self.post_message(self.Read(service, key, None))
            return
        try:
            state_dir = self.app.config.settings.state_dir
            pending = read_pending(workspace_path(state_dir, service), branch, deployed)
        finally:
            lock.release()
        self.post_message(self.Read(service, key, pending))

    @on(Read)
    def take_read(self, message: Read) -> None:
        if message.pending is None:
            if self.read_for.get(message.service) == message.key:
                del self.read_for[message.service]
            return
        self.pending[message.service] = message.pending
        if message.service == self.service:
            self.show(message.pending)

    # -- showing ----------------------------------------------------------------
    def show_waiting(self, why: str) -> None:
        self._shown = None
        self.body.update(Content.styled(why, "$text-muted"))

    def show(self, pending: Pending, *, force: bool = False) -> None:
        if pending == self._shown and not force:
            return
        self._shown = pending
        width = max(10, self.body.content_size.width)
        self.border_title = f"not deployed · {pending.branch}"
        if pending.error:
            self.border_subtitle = ""
            self.body.update(Content.styled(printable(pending.error), "$text-muted"))
            return
        count = len(pending.commits)
        lines: list[Content] = []
        if pending.base is None:
            self.border_subtitle = ""
            lines.append(Content.styled(f"{pending.note}: latest commits", "$warning"))
        elif count == 0:
            self.border_subtitle = "up to date"
            lines.append(
                Content.styled(
                    f"✔ hosts run the tip of {pending.branch} ({pending.base[:7]})", "$success"
                )
            )
        else:
            self.border_subtitle = f"{count}{'+' if count >= 50 else ''} commit(s)"
        for commit in pending.commits:
            text = f"{commit.sha[:7]} {printable(commit.subject)}"
            if len(text) > width:
                text = text[: max(8, width - 1)] + "…"
            lines.append(Content.assemble((text[:8], "bold"), text[8:]))
        self.body.update(Content("\n").join(lines))

"""What screens, widgets and the command palette may use of the app.

:class:`Console` holds what outlives a screen (the config, the one status poller, the
fleet facts, the run, the postman that delivers notifications, whether the console is
read-only) and names the verbs (start or cancel a run, ask before a rollback, a
command or an unlock, show a plan); :class:`relconsole.ui.app.RelconsoleApp`
implements them. This module imports no screen, so any screen can type ``self.app``
as a ``Console`` without an import cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Optional

from textual.app import App

from relconsole.config import Config
from relconsole.hosts.connect import Connector, open_transport
from relconsole.notify import Delivery, Postman
from relconsole.status.poller import StatusPoller
from relconsole.ui.fleet_facts import FleetFacts
from relconsole.ui.run_state import RunState


class Console(App[int]):
    def __init__(
        self,
        config: Config,
        connector: Optional[Connector] = None,
        poller: Optional[StatusPoller] = None,
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        #: Nothing can be changed from this console (``--read-only``).
        self.read_only = read_only
        #: Opens a transport to a host for runs and polls (tests and sandboxes swap it).
        self.connector: Connector = connector or open_transport
        self.poller = poller or StatusPoller(
            list(config.hosts.values()), config.settings, self.connector
        )
        self.fleet = FleetFacts()
        #: Delivers the ``[notify]`` notifications of this console's runs; a failed one
        #: is a warning on screen (and a row's ``deliveries`` in the history).
        self.postman = Postman(on_delivered=self._delivered)
        #: The run in progress, or the last one (None before the first).
        self.run_state: Optional[RunState] = None
        # Serialises git in a service's workspace: a pending-commits fetch, a build's checkout.
        self._workspace_locks: dict[str, threading.Lock] = {}

    @property
    def active_run(self) -> Optional[RunState]:
        """The run in progress, if any."""
        run = self.run_state
        return run if run is not None and run.running else None

    def workspace_lock(self, service: str) -> threading.Lock:
        return self._workspace_locks.setdefault(service, threading.Lock())

    def _delivered(self, delivery: Delivery) -> None:
        """From a delivery's thread: a notification that did not arrive is a warning."""
        if delivery.ok:
            return
        try:
            self.call_from_thread(
                self.notify, delivery.describe(), severity="warning", markup=False, timeout=8
            )
        except RuntimeError:  # the app is not running any more: the history keeps it
            pass

    def refuse_read_only(self, what: str) -> bool:
        """True, with a word to the operator, in a read-only console."""
        if self.read_only:
            self.notify(
                f"read-only console: {what} is not available (started with --read-only)",
                severity="warning",
                markup=False,
            )
        return self.read_only

    def refuse_while_running(self) -> bool:
        """True, with a word to the operator, while a run is in progress."""
        run = self.active_run
        if run is not None:
            self.notify(
                f"a {run.action} of {run.service} is running; esc cancels it",
                severity="warning",
                markup=False,
            )
        return run is not None

    # -- the verbs (RelconsoleApp) ----------------------------------------------
    def start_build(
        self, service: str, branch: Optional[str] = None, confirmed: bool = False
    ) -> None:
        """Build ``branch`` (None: the configured one) of ``service`` and deploy it. A
        service with ``confirm = true`` shows its plan first and wants its name typed
        (``confirmed``: that was done)."""
        raise NotImplementedError

    def start_rollback(
        self, service: str, to: Optional[str] = None, confirmed: bool = False
    ) -> None:
        """Switch every host of ``service`` back to release ``to`` (None: the previous)."""
        raise NotImplementedError

    def start_command(
        self, service: str, argv: list[str], sudo: bool = False, confirmed: bool = False
    ) -> None:
        """Run ``argv`` on every host of ``service`` in its current release."""
        raise NotImplementedError

    def ask_command(self, service: str) -> None:
        """Ask which command to run on every host of ``service``, then run it."""
        raise NotImplementedError

    def show_plan(self, service: str, branch: Optional[str] = None) -> None:
        """Open the plan view: what a build of ``branch`` of ``service`` would do."""
        raise NotImplementedError

    def ask_typed_name(self, service: str, doing: str, then: Callable[[], None]) -> None:
        """Ask for ``service``'s name to be typed before ``doing``; ``then`` if it was."""
        raise NotImplementedError

    def cancel_run(self) -> None:
        """Ask the run in progress to stop between steps."""
        raise NotImplementedError

    def ask_rollback(self, service: str) -> None:
        """Ask which release to go back to, then roll back."""
        raise NotImplementedError

    def ask_unlock(self, service: str) -> None:
        """Ask, then remove ``service``'s deploy lock on every host."""
        raise NotImplementedError

    def show_history(self, service: Optional[str]) -> None:
        """Open the history screen on ``service`` (None: every service)."""
        raise NotImplementedError

    def show_doctor(self) -> None:
        """Open the doctor: every host of every service checked."""
        raise NotImplementedError

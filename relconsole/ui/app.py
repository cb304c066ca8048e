"""The Textual front end: ``relconsole`` without a headless mode.

:class:`RelconsoleApp` owns what outlives a screen (see :class:`~relconsole.ui.console.
Console`) and the run: it starts the engine in a thread worker whose sink appends to
the run's deque, drains that deque about 30 times a second into the main screen
(at most :data:`MAX_BATCH` events a tick), and ends the run when its
``BuildFinished`` has been shown. A run is a build, a rollback or a command on every
host (``--run``'s engine, shown per host like a build's stages). It also asks before
quitting during a run, before a rollback, a command and an unlock; a service with
``confirm = true`` shows its plan before a build and wants its name typed before any
of them. A read-only console (``--read-only``) starts none of them.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import Callable
from typing import Optional

from textual import on, work
from textual.binding import Binding
from textual.driver import Driver
from textual.message import Message

from relconsole.adhoc import command_line, run_adhoc
from relconsole.config import Config, validate_branch
from relconsole.events import BuildFinished, RunResult, Sink
from relconsole.hosts.connect import Connector
from relconsole.pipeline import force_unlock, run_build, run_rollback
from relconsole.status.poller import StatusPoller
from relconsole.text import printable
from relconsole.ui.commands import RelconsoleCommands
from relconsole.ui.console import Console
from relconsole.ui.dialogs import ConfirmUnlock, QuitWhileBuilding, TypeToConfirm
from relconsole.ui.main_screen import MainScreen
from relconsole.ui.rollback_dialog import RollbackDialog
from relconsole.ui.run_state import RunState
from relconsole.ui.terminal import console_driver

#: Events shown per drain tick at most (~25 ms of work); the rest wait for the next tick.
MAX_BATCH = 20_000

#: What runs in the worker: the engine, given the sink and the cancel event.
Work = Callable[[Sink, threading.Event], BuildFinished]


class RelconsoleApp(Console):
    CSS_PATH = "app.tcss"
    TITLE = "relconsole"
    COMMANDS = {RelconsoleCommands}  # includes Textual's system commands, listed after ours
    BINDINGS = [
        Binding("p", "processes", "Processes"),
        Binding("q", "quit", "Quit"),
        # Every key of the screen, as k9s's "?" (the footer cannot hold them at 80
        # columns); Textual's "Keys" command of the palette does the same.
        Binding("question_mark", "toggle_keys", "Keys", key_display="?", show=False),
    ]

    class Unlocked(Message):
        def __init__(self, service: str, ok: bool, lines: list[str]) -> None:
            super().__init__()
            self.service = service
            self.ok = ok
            self.lines = lines

    def __init__(
        self,
        config: Config,
        connector: Optional[Connector] = None,
        poller: Optional[StatusPoller] = None,
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(config, connector, poller, read_only=read_only)
        #: The signal that ended the console (SIGHUP, SIGTERM), if one did.
        self.stopped_by: Optional[int] = None
        self.main_screen = MainScreen()
        self.sub_title = str(config.path)
        if read_only:
            self.title = "relconsole · READ-ONLY"

    def get_driver_class(self) -> type[Driver]:
        return console_driver(super().get_driver_class())

    def get_default_screen(self) -> MainScreen:
        return self.main_screen

    def on_mount(self) -> None:
        self.drain_timer = self.set_interval(1 / 30, self.drain_run, pause=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop_signal, signum)
        self.call_after_refresh(self.calm_the_collector)
        for warning in self.config.warnings:  # never a secret: the loader words them
            self.notify(warning, title="config", severity="warning", markup=False, timeout=10)

    def calm_the_collector(self) -> None:
        """A check printing 200,000 lines makes as many event objects: with the default
        thresholds the cyclic GC then runs full collections of every object the app
        holds, 50-90 ms each, all threads stopped. The widgets, styles and caches built
        at start-up live as long as the app: freeze them out of collections, and collect
        young objects less often (cycles are rare here; memory is not the constraint)."""
        self._gc_thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)

    def on_unmount(self) -> None:
        # Waits for a poll in flight (bounded by connect_timeout), then closes connections.
        self.poller.close()
        if hasattr(self, "_gc_thresholds"):
            gc.set_threshold(*self._gc_thresholds)
            gc.unfreeze()

    # -- screens ----------------------------------------------------------------
    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_processes(self) -> None:
        from relconsole.ui.process_screen import ProcessScreen

        if not isinstance(self.screen, ProcessScreen):
            self.push_screen(ProcessScreen(self.config, self.poller, read_only=self.read_only))

    def show_doctor(self) -> None:
        from relconsole.ui.doctor_screen import DoctorScreen

        self.push_screen(DoctorScreen())

    def show_history(self, service: Optional[str]) -> None:
        from relconsole.ui.history_screen import HistoryScreen

        self.push_screen(HistoryScreen(self.config, service))

    def show_plan(self, service: str, branch: Optional[str] = None) -> None:
        from relconsole.ui.plan_screen import PlanScreen

        branch = branch or self.config.services[service].branch
        self.push_screen(PlanScreen(self.config.services[service], branch))

    def ask_typed_name(self, service: str, doing: str, then: Callable[[], None]) -> None:
        def answered(yes: Optional[bool]) -> None:
            if yes:
                then()

        self.push_screen(TypeToConfirm(service, doing), answered)

    # -- runs -------------------------------------------------------------------
    def start_build(
        self, service: str, branch: Optional[str] = None, confirmed: bool = False
    ) -> None:
        if self.refuse_read_only("Build") or self.refuse_while_running():
            return
        settings = self.config.services[service]
        try:
            branch = validate_branch((branch or settings.branch).strip())
        except ValueError as exc:
            self.notify(str(exc), title="Not building", severity="error", markup=False)
            return
        refused = settings.refuse_branch(branch)
        if refused:
            self.notify(refused, title="Not building", severity="error", markup=False)
            return
        if settings.confirm and not confirmed:
            self.show_plan(service, branch)  # its b asks for the name, then builds
            return
        config, connector, git = self.config, self.connector, self.workspace_lock(service)
        postman = self.postman

        def build(sink: Sink, cancel: threading.Event) -> BuildFinished:
            with git:  # waits for a pending-commits fetch in the workspace to end
                return run_build(
                    config,
                    service,
                    sink,
                    cancel,
                    branch=branch,
                    trigger="tui",
                    connector=connector,
                    postman=postman,
                )

        self.begin_run(self.new_run(service, "build", branch), build)

    def start_rollback(
        self, service: str, to: Optional[str] = None, confirmed: bool = False
    ) -> None:
        if self.refuse_read_only("Roll back") or self.refuse_while_running():
            return
        if self.config.services[service].confirm and not confirmed:
            self.ask_typed_name(
                service,
                f"roll back to {to or 'the previous release'}",
                lambda: self.start_rollback(service, to, confirmed=True),
            )
            return
        config, connector, postman = self.config, self.connector, self.postman

        def roll_back(sink: Sink, cancel: threading.Event) -> BuildFinished:
            return run_rollback(
                config,
                service,
                sink,
                cancel,
                to=to,
                trigger="tui",
                connector=connector,
                postman=postman,
            )

        branch = self.config.services[service].branch
        self.begin_run(self.new_run(service, "rollback", branch), roll_back)

    def ask_command(self, service: str) -> None:
        from relconsole.ui.run_dialog import RunCommandDialog

        if self.refuse_read_only("Run command") or self.refuse_while_running():
            return

        def answered(command: Optional[tuple[list[str], bool]]) -> None:
            if command:
                self.start_command(service, *command)

        self.push_screen(RunCommandDialog(self.config.services[service]), answered)

    def start_command(
        self, service: str, argv: list[str], sudo: bool = False, confirmed: bool = False
    ) -> None:
        if self.refuse_read_only("Run command") or self.refuse_while_running():
            return
        if self.config.services[service].confirm and not confirmed:
            self.ask_typed_name(
                service,
                f"run {command_line(argv)}" + (" as root" if sudo else ""),
                lambda: self.start_command(service, argv, sudo, confirmed=True),
            )
            return
        config, connector, postman = self.config, self.connector, self.postman

        def run(sink: Sink, cancel: threading.Event) -> BuildFinished:
            return run_adhoc(
                config,
                service,
                argv,
                sink,
                cancel,
                sudo=sudo,
                trigger="tui",
                connector=connector,
                postman=postman,
            )

        branch = self.config.services[service].branch
        self.begin_run(self.new_run(service, "run", branch), run)

    def new_run(self, service: str, action: str, branch: str) -> RunState:
        hosts = tuple(h.name for h in self.config.hosts_of(self.config.services[service]))
        return RunState(service, action, branch, hosts)

    def begin_run(self, run: RunState, work: Work) -> None:
        self.run_state = run
        self.main_screen.follow_run(run)
        self.drain_timer.resume()
        self.run_in_thread(run, work)

    @work(thread=True, group="run", exit_on_error=False)
    def run_in_thread(self, run: RunState, work: Work) -> None:
        try:
            work(run.events.append, run.cancel)
        except Exception as exc:  # a bug in the engine must still end the run on screen
            run.events.append(
                BuildFinished(
                    result=RunResult.FAILED,
                    seconds=0.0,
                    service=run.service,
                    error=f"internal error: {type(exc).__name__}: {exc}",
                )
            )
        finally:
            run.engine_done.set()

    def stop_signal(self, signum: int) -> None:
        """SIGHUP (the terminal or ssh session went away) or SIGTERM: cancel the run as
        Cancel does and leave at once; ``relconsole.app.run_app`` waits for the engine's
        clean-up (no lock left behind, no half-switched fleet) before the process
        exits with 128 + the signal. Not waiting here: there may be no terminal left to
        draw on."""
        self.stopped_by = signum
        run = self.active_run
        if run is not None:
            run.cancel.set()
        self.exit(128 + signum)

    def cancel_run(self) -> None:
        run = self.active_run
        if run is None:
            return
        if not run.cancel.is_set():
            run.cancel.set()
            text = f"Cancelling the {run.action} of {run.service}…"
            self.notify(text, severity="warning", markup=False)
        self.main_screen.show_cancelling()

    def drain_run(self) -> None:
        run = self.run_state
        if run is None:
            return
        batch = run.take(MAX_BATCH)
        if batch:
            self.main_screen.show_run_events(batch)
        if not run.running:
            self.drain_timer.pause()
            self.end_run(run)

    def end_run(self, run: RunState) -> None:
        title, text, severity = run.notice()
        self.notify(text, title=title, severity=severity, markup=False)
        if run.quit_when_finished:
            self.exit(0)
            return
        self.main_screen.run_ended(run)

    async def action_quit(self) -> None:
        run = self.active_run
        if run is None:
            self.exit(0)
            return
        if run.quit_when_finished:
            self.notify(
                f"Still cancelling the {run.action}; quitting when it stops…", severity="warning"
            )
            return
        if isinstance(self.screen, QuitWhileBuilding):
            return

        def answered(cancel_and_quit: Optional[bool]) -> None:
            if cancel_and_quit and run.running:
                run.quit_when_finished = True
                self.cancel_run()
                text = f"Quitting when the {run.action} has stopped…"
                self.notify(text, severity="warning", markup=False)
            elif cancel_and_quit:
                self.exit(0)

        self.push_screen(QuitWhileBuilding(run.service, run.action), answered)

    # -- questions first ----------------------------------------------------------
    def ask_rollback(self, service: str) -> None:
        if self.refuse_read_only("Roll back") or self.refuse_while_running():
            return
        self.main_screen.fleet_column.select_service(service)

        def answered(target: Optional[str]) -> None:
            if target:
                self.start_rollback(service, target)

        holder = self.fleet.lock_holder(service)
        self.push_screen(
            RollbackDialog(self.config, service, self.poller.on_host, holder), answered
        )

    def ask_unlock(self, service: str) -> None:
        if self.refuse_read_only("Unlock"):
            return
        run = self.active_run
        if run is not None and run.service == service:
            self.notify(
                f"this console is running a {run.action} of {service}: cancel it instead (esc)",
                severity="warning",
                markup=False,
            )
            return

        def answered(yes: Optional[bool]) -> None:
            if yes:
                self.notify(f"Removing the deploy lock of {service}…", markup=False)
                self.unlock_in_thread(service)

        self.push_screen(ConfirmUnlock(service, self.fleet.lock_holder(service)), answered)

    @work(thread=True, group="unlock", exit_on_error=False)
    def unlock_in_thread(self, service: str) -> None:
        try:
            ok, lines = force_unlock(
                self.config, service, trigger="tui", connector=self.connector, postman=self.postman
            )
        except Exception as exc:
            ok, lines = False, [f"internal error: {type(exc).__name__}: {exc}"]
        self.post_message(self.Unlocked(service, ok, lines))

    @on(Unlocked)
    def show_unlocked(self, message: Unlocked) -> None:
        text = "\n".join(printable(line) for line in message.lines) or "done"
        self.notify(
            text,
            title=f"Unlock {message.service}" + ("" if message.ok else " failed"),
            severity="information" if message.ok else "error",
            markup=False,
            timeout=10,
        )
        if message.ok:
            self.fleet.locks.pop(message.service, None)
        self.main_screen.unlock_answered(message.service, message.ok)

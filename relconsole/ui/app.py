"""The Textual front end: ``relconsole`` without --build or --status.

The app owns what outlives a screen: the config, the one :class:`StatusPoller`
shared by the main screen and the process view, and quitting (which asks first
while a build runs). The main screen is in :mod:`relconsole.ui_main`.
"""

from __future__ import annotations

import gc
from typing import Optional

from textual.app import App
from textual.binding import Binding

from relconsole.config import Config
from relconsole.hosts.connect import Connector
from relconsole.status.poller import StatusPoller
from relconsole.ui.commands import RelconsoleCommands
from relconsole.ui.dialogs import QuitWhileBuilding
from relconsole.ui.main_screen import MainScreen


class RelconsoleApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "relconsole"
    COMMANDS = {RelconsoleCommands}  # includes Textual's system commands, listed after ours
    BINDINGS = [
        Binding("p", "processes", "Processes"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, config: Config, connector: Optional[Connector] = None) -> None:
        super().__init__()
        self.config = config
        self.connector = connector  # None: the engine's own (SSH or local)
        kwargs = {"connector": connector} if connector else {}
        self.poller = StatusPoller(list(config.hosts.values()), config.settings, **kwargs)
        self.main_screen = MainScreen()
        self.sub_title = str(config.path)

    def get_default_screen(self) -> MainScreen:
        return self.main_screen

    def on_mount(self) -> None:
        self.call_after_refresh(self.calm_the_collector)

    def calm_the_collector(self) -> None:
        """A check printing 200,000 lines makes as many event objects: with the default
        thresholds the cyclic GC then runs full collections of every object the app
        holds, 50-90 ms each, all threads stopped. The widgets, styles and caches built
        at start-up live as long as the app: freeze them out of collections, and collect
        young objects less often (cycles are rare here; memory is not the constraint)."""
        self._gc_thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)

    def action_processes(self) -> None:
        from relconsole.ui.process_screen import ProcessScreen

        if not isinstance(self.screen, ProcessScreen):
            self.push_screen(ProcessScreen(self.config, self.poller))

    async def action_quit(self) -> None:
        main = self.main_screen
        if not main.build_running:
            self.exit(0)
            return
        if main.quit_when_finished:
            self.notify(
                f"Still cancelling the {main.running_action}; quitting when it stops…",
                severity="warning",
            )
            return
        if isinstance(self.screen, QuitWhileBuilding):
            return

        def answered(cancel_and_quit: Optional[bool]) -> None:
            if cancel_and_quit and main.build_running:
                main.quit_when_finished = True
                main.cancel_build()
                self.notify(
                    f"Quitting when the {main.running_action} has stopped…", severity="warning"
                )
            elif cancel_and_quit:
                self.exit(0)

        self.push_screen(
            QuitWhileBuilding(main.building or "a service", main.running_action), answered
        )

    def on_unmount(self) -> None:
        # Waits for a poll in flight (bounded by connect_timeout), then closes connections.
        self.poller.close()
        if hasattr(self, "_gc_thresholds"):
            gc.set_threshold(*self._gc_thresholds)
            gc.unfreeze()


def run_app(config: Config) -> int:
    """Run the console until the operator quits; returns the process exit code."""
    app = RelconsoleApp(config)
    code = app.run()
    return app.return_code or (code or 0)

"""The command palette's relconsole commands (ctrl+p)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from relconsole.ui.app import RelconsoleApp


class RelconsoleCommands(Provider):
    """Build / Roll back / Unlock <service>, Cancel, History, Status, the main screen's
    other actions, then Textual's."""

    def commands(self) -> Iterator[tuple[str, Callable, str]]:
        app: RelconsoleApp = self.app  # type: ignore[assignment]
        main = app.main_screen
        if main.build_running:
            yield (
                f"Cancel {main.running_action}",
                main.cancel_build,
                f"Stop the {main.running_action} of {main.building} between steps",
            )
        else:
            for name, service in app.config.services.items():
                hosts = ", ".join(service.hosts)
                yield (
                    f"Build {name}",
                    partial(main.start_build, name),
                    f"Build {service.branch} and deploy to {hosts}",
                )
                yield (
                    f"Roll back {name}",
                    partial(main.ask_rollback, name),
                    f"Switch {hosts} back to an earlier release (asks first)",
                )
        for name in app.config.services:
            lock = main.locks.get(name)
            held = f"held by {lock.describe()}" if lock else "no lock seen at the last poll"
            yield (
                f"Unlock {name}",
                partial(main.ask_unlock, name),
                f"Remove the deploy lock (asks first; {held})",
            )
        yield "History", main.action_history, "Every build and rollback, with its log (key h)"
        yield "Status", app.action_processes, "Process view: supervisor status of every host"
        yield "Edit branch", main.query_one("#branch").focus, "Build another branch of the service"
        yield "Services", main.query_one("#services").focus, "Move to the services list"
        for number, stage in enumerate(main.build_view.strip.shown(), 1):
            yield (
                f"Show {stage} output",
                partial(main.build_view.select_stage, stage),
                f"The {stage} pane (key {number})",
            )
        # Textual's own (Keys, Theme, Quit...) after ours: one provider keeps the order.
        for name, help_text, callback, *_ in app.get_system_commands(self.screen):
            yield name, callback, help_text

    async def discover(self) -> Hits:
        for name, command, help_text in self.commands():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, command, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, help=help_text)

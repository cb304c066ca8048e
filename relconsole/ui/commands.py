"""The command palette's relconsole commands (ctrl+p).

They read the app's models (the run, the fleet facts) and call the app's verbs; the
only screen detail they use is a focus target by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from relconsole.ui.console import Console


class RelconsoleCommands(Provider):
    """Build / Plan / Roll back / Run command / Unlock <service>, Cancel, History,
    Status, focus moves, the run's stages, then Textual's. A read-only console offers
    none of the verbs that change anything."""

    def commands(self) -> Iterator[tuple[str, Callable, str]]:
        app = self.app
        assert isinstance(app, Console)
        run = app.active_run
        changing = not app.read_only
        if run is not None:
            yield (
                f"Cancel {run.action}",
                app.cancel_run,
                f"Stop the {run.action} of {run.service} between steps",
            )
        elif changing:
            for name, service in app.config.services.items():
                hosts = ", ".join(service.hosts)
                asks = " (shows the plan, asks for the name)" if service.confirm else ""
                yield (
                    f"Build {name}",
                    partial(app.start_build, name),
                    f"Build {service.branch} and deploy to {hosts}{asks}",
                )
                yield (
                    f"Roll back {name}",
                    partial(app.ask_rollback, name),
                    f"Switch {hosts} back to an earlier release (asks first)",
                )
                yield (
                    f"Run command on {name}",
                    partial(app.ask_command, name),
                    f"One command on {hosts} at once, in the current release, output per host",
                )
        for name, service in app.config.services.items():
            yield (
                f"Plan {name}",
                partial(app.show_plan, name),
                f"What a build of {service.branch} would do: commits, diffs, programs, "
                "lock (key P)",
            )
        for name in app.config.services if changing else ():
            holder = app.fleet.lock_holder(name)
            held = f"held by {holder}" if holder else "no lock seen at the last poll"
            yield (
                f"Unlock {name}",
                partial(app.ask_unlock, name),
                f"Remove the deploy lock (asks first; {held})",
            )
        screen = self.screen
        on_main = hasattr(screen, "action_show_stage")  # the main screen, under the palette
        yield (
            "History",
            partial(screen.run_action, "history") if on_main else partial(app.show_history, None),
            "Every build and rollback, with its log (key h)",
        )
        yield (
            "Status",
            partial(app.run_action, "processes"),
            "Process view: supervisor status of every host",
        )
        yield (
            "Doctor",
            app.show_doctor,
            "Check every host: route, host key, login, sudo, supervisorctl, path, disk",
        )
        if on_main:
            if changing:
                yield (
                    "Edit branch",
                    partial(self.focus, "#branch"),
                    "Build another branch of the service",
                )
            yield "Services", partial(self.focus, "#services"), "Move to the services list"
            for number, stage in enumerate(app.run_state.stages if app.run_state else (), 1):
                yield (
                    f"Show {stage} output",
                    partial(screen.run_action, f"show_stage({number})"),
                    f"The {stage} pane (key {number})",
                )
        # Textual's own (Keys, Theme, Quit...) after ours: one provider keeps the order.
        for name, help_text, callback, *_ in app.get_system_commands(self.screen):
            yield name, callback, help_text

    def focus(self, selector: str) -> None:
        self.screen.query_one(selector).focus()

    async def discover(self) -> Hits:
        for name, command, help_text in self.commands():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, command, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, help=help_text)

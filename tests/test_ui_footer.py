"""The console's footer: refreshing the bindings must not keep the old keys alive.

Textual's Footer rebuilds its keys on every ``refresh_bindings`` and data-binds each to
its ``compact``; that binding stays on the footer, so every key ever made stayed alive
(Textual issue #6666). The process view refreshes its bindings at each poll that moves
the cursor row: the console grew ~10 MB a minute while hosts went down and came back.
"""

from __future__ import annotations

import gc
import io
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from relconsole.ui.footer import Footer


class Keys(App):
    BINDINGS = [Binding(key, key, f"action {key}") for key in "abcd"]

    def compose(self) -> ComposeResult:
        yield Static("body")
        yield Footer()


def live_keys() -> int:
    gc.collect()
    return sum(isinstance(o, FooterKey) for o in gc.get_objects())


async def test_refreshing_the_bindings_many_times_keeps_only_the_footers_keys():
    app = Keys()
    async with app.run_test() as pilot:
        await pilot.pause()
        for _ in range(12):
            app.screen.refresh_bindings()
            await pilot.pause()
        shown = len(app.query(FooterKey))
        assert shown >= 4
        assert live_keys() <= shown + 4  # a rebuild's worth may still be on its way out


def console_app(tmp: Path):
    """The console over one scripted host."""
    from fakehost import connector, fake_config, fake_hosts
    from gitorigin import make_origin, sample_service_files

    from relconsole.ui.app import RelconsoleApp

    origin = make_origin(tmp / "origin")
    origin.commit(sample_service_files("svc", "/srv/svc"), "v1")
    fakes = fake_hosts(tmp / "hosts", "h1", programs=["svc"])
    return RelconsoleApp(fake_config(tmp, fakes, origin.url), connector=connector(fakes))


async def test_the_main_screens_keys_all_fit_an_80_column_terminal(tmp_path):
    """At 80 columns the keys are compact, and the last one ("q Quit") is whole; wider,
    Textual's spacing comes back."""
    app = console_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        footer = app.screen.query_one(Footer)
        assert footer.compact
        (quit_key,) = [k for k in footer.query(FooterKey) if k.key == "q"]
        # Whole: it ends before the palette's key docked at the right does.
        palette = footer.query_one(".-command-palette")
        assert quit_key.region.right <= palette.region.x, (quit_key.region, palette.region)
        await pilot.resize_terminal(140, 30)
        await pilot.pause(0.3)
        assert not app.screen.query_one(Footer).compact


async def test_question_mark_lists_every_key_of_the_screen_and_closes_again(tmp_path):
    from rich.console import Console
    from textual.widgets import HelpPanel
    from textual.widgets._key_panel import BindingsTable

    app = console_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("question_mark")
        await pilot.pause()
        (panel,) = app.screen.query(HelpPanel)
        table = panel.query_one(BindingsTable).render_bindings_table()
        text = Console(width=80, file=io.StringIO())
        text.print(table)
        listed = text.file.getvalue()  # type: ignore[attr-defined]
        assert "Roll back" in listed and "Processes" in listed, listed
        await pilot.press("question_mark")
        await pilot.pause()
        assert not app.screen.query(HelpPanel)


async def test_the_process_views_keys_fit_80_columns_and_all_show_when_wide(tmp_path):
    from relconsole.ui.process_screen import ProcessScreen

    app = console_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("p")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ProcessScreen)

        def keys() -> dict[str, FooterKey]:
            shown = list(app.screen.query_one(Footer).query(FooterKey))
            assert len({k.key for k in shown}) == len(shown), "a key shown twice"
            return {k.key: k for k in shown}

        # The footer rebuilds its keys after the next refresh: wait for it.
        async def until(holds) -> None:
            for _ in range(100):
                if holds():
                    return
                await pilot.pause(0.05)
            assert holds(), sorted(keys())

        await until(lambda: {"space", "a", "g", "q"}.isdisjoint(keys()))
        shown = keys()
        palette = shown.pop("ctrl+p")
        last = max(shown.values(), key=lambda k: k.region.right)
        assert last.key == "escape" and last.region.right <= palette.region.x
        await pilot.resize_terminal(140, 30)
        await until(lambda: {"space", "a", "g", "q", "escape", "r", "l"} <= set(keys()))
        await pilot.resize_terminal(80, 24)
        await until(lambda: "space" not in keys())

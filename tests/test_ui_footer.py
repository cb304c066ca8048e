"""The console's footer: refreshing the bindings must not keep the old keys alive.

Textual's Footer rebuilds its keys on every ``refresh_bindings`` and data-binds each to
its ``compact``; that binding stays on the footer, so every key ever made stayed alive
(Textual issue #6666). The process view refreshes its bindings at each poll that moves
the cursor row: the console grew ~10 MB a minute while hosts went down and came back.
"""

from __future__ import annotations

import gc

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

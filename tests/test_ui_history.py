"""The history screen reads the history once when it opens and again when it is back
from a run's log (runs may have ended meanwhile); not when the palette closes over it (a
reload puts the view back at its first column)."""

from __future__ import annotations

from test_ui_footer import console_app
from textual.command import CommandPalette
from textual.widgets import DataTable

from relconsole import history as history_module
from relconsole.history import History
from relconsole.ui.history_screen import HistoryScreen


def record_a_run(state_dir) -> None:
    history = History(state_dir)
    row_id, _ = history.start(
        service="svc", action="build", who="alice@box", trigger="tui", branch="main", hosts=["h1"]
    )
    history.update(row_id, duration=1.5, result="success", sha="a" * 40, subject="v1")
    history.close()


async def test_the_history_is_read_at_opening_and_again_back_from_a_log(tmp_path, monkeypatch):
    reads: list[object] = []
    real_list = history_module.History.list

    def counting_list(self, *args, **kwargs):
        reads.append(args)
        return real_list(self, *args, **kwargs)

    monkeypatch.setattr(history_module.History, "list", counting_list)
    app = console_app(tmp_path)
    record_a_run(app.config.settings.state_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        reads.clear()  # only the history screen's reads are counted
        await pilot.press("h")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        table = screen.query_one(DataTable)
        for _ in range(100):
            if table.row_count:
                break
            await pilot.pause(0.02)
        await pilot.pause(0.3)  # a second read, if one came, has landed by now
        assert len(reads) == 1 and table.row_count == 1, reads

        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert app.screen is screen and len(reads) == 1, reads

        await pilot.press("enter")  # the run's log, then back
        await pilot.pause(0.2)
        assert app.screen is not screen
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert app.screen is screen and len(reads) == 2, reads

"""The build panes' Log: a batch of lines is measured where it is written, never by a
thread worker per write (50 host panes at 30 batches a second held keys back)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from relconsole.ui.host_logs import make_log


class OneLog(App[None]):
    def compose(self) -> ComposeResult:
        yield make_log(id="pane")


async def test_writing_lines_starts_no_worker_and_widens_the_log():
    app = OneLog()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one("#pane")
        for n in range(30):
            log.write_lines([f"line {n}", "x" * (50 + n)])
        started = len(app.workers)
        await pilot.pause()
        assert started == 0
        assert log.virtual_size.width == 79  # the widest line, measured at once
        assert len(log.lines) == 60

"""MeasuredTable: a row drawn before its table measured the new cells is drawn again.

Textual's DataTable caches rendered rows under a key that measuring does not move, so
a row painted between ``add_row`` (or ``update_cell``) and the table's next idle stayed
cut to the columns' earlier widths (the history screen once showed "c1a" for a sha in CI).
"""

from __future__ import annotations

import html
import re

import pytest
from onewidget import OneWidget
from textual.app import App
from textual.widgets import DataTable

from relconsole.ui.measured_table import MeasuredTable


def screen_text(app: App) -> str:
    svg = app.export_screenshot()
    texts = re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S)
    return "".join(html.unescape(re.sub("<[^>]+>", "", t)) for t in texts).replace("\xa0", " ")


async def shown_after_an_early_paint(table: DataTable, how: str) -> str:
    """The screen after a row was painted between a change that widens a column and the
    table's next idle (when Textual measures): ``how`` is "add_row" or "update_cell"."""
    app = OneWidget(table)
    async with app.run_test(size=(60, 8)) as pilot:
        table.add_column("sha", key="sha")
        table.add_column("who", key="who")
        await pilot.pause()
        if how == "add_row":
            table.add_row("c1acb55", "alice@box")
        else:
            table.add_row("c1a", "ali", key="run")
            await pilot.pause(0.2)  # measured at these widths
            table.update_cell("run", "sha", "c1acb55", update_width=True)
            table.update_cell("run", "who", "alice@box", update_width=True)
        table.render_line(1)  # a paint before the table is idle, as on a busy machine
        await pilot.pause(0.2)
        assert [c.content_width for c in table.ordered_columns] == [7, 9]  # measured
        return screen_text(app)


@pytest.mark.parametrize("how", ["add_row", "update_cell"])
async def test_textuals_datatable_keeps_a_row_drawn_before_measuring_cut(how):
    """Textual's bug, asserted: when this fails, Textual fixed it and MeasuredTable can go."""
    shown = await shown_after_an_early_paint(DataTable(), how)
    assert "c1acb55" not in shown and " c1a " in shown, shown


@pytest.mark.parametrize("how", ["add_row", "update_cell"])
async def test_a_measured_table_draws_the_row_again_at_its_measured_widths(how):
    shown = await shown_after_an_early_paint(MeasuredTable(), how)
    assert "c1acb55" in shown and "alice@box" in shown, shown

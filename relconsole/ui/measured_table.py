"""Textual's DataTable, drawing its rows again once their columns are measured."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widgets import DataTable


class MeasuredTable(DataTable):
    """A DataTable whose rows never stay cut to the widths of the column labels.

    Textual (8.2) measures new cells when the table is next idle, and caches each
    rendered row and cell under a key (``_update_count``) that a new row moves but
    the measuring does not. A row drawn in between (a busy app paints before the
    table's idle) was drawn at the labels' widths, and stayed so ("c1a" for a sha,
    "ali" for alice) until something else changed the table: seen on the history
    screen. Measuring now moves the key when a column's width changed.
    """

    def _update_dimensions(self, new_rows: Iterable) -> None:
        before = [column.content_width for column in self.columns.values()]
        super()._update_dimensions(new_rows)
        if [column.content_width for column in self.columns.values()] != before:
            # Private to Textual: without the attribute this only repaints.
            self._update_count = getattr(self, "_update_count", 0) + 1
            self.refresh()

"""Textual's DataTable, drawing its rows again once their columns are measured."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from textual.widgets import DataTable


class MeasuredTable(DataTable):
    """A DataTable whose rows never stay cut to the widths their columns had before.

    Textual (8.2) measures new and updated cells when the table is next idle, and
    caches each rendered row and cell under a key (``_update_count``) that ``add_row``
    and ``update_cell`` move but the measuring does not. A row drawn in between (a busy
    app paints before the table's idle) was drawn at the old widths, and stayed so
    ("c1a" for a sha, "ali" for alice) until something else changed the table: seen on
    the history screen. Measuring now moves the key when a column's width changed.
    """

    def _update_column_widths(self, updated_cells: set) -> None:  # after update_cell
        with self._redrawn_if_widths_change():
            super()._update_column_widths(updated_cells)

    def _update_dimensions(self, new_rows: Iterable) -> None:  # after add_row
        with self._redrawn_if_widths_change():
            super()._update_dimensions(new_rows)

    @contextmanager
    def _redrawn_if_widths_change(self) -> Iterator[None]:
        before = [column.content_width for column in self.columns.values()]
        yield
        if [column.content_width for column in self.columns.values()] != before:
            # Private to Textual: without the attribute this only repaints.
            self._update_count = getattr(self, "_update_count", 0) + 1
            self.refresh()

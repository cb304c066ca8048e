"""The process view's table: one row per program per host, updated in place."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.widgets import DataTable

from relconsole.status.tracker import FleetRow
from relconsole.ui.process_rows import COLUMNS, matches, render_row, same_cell


class ProcessTable(DataTable):
    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_known: list[FleetRow] = []  # every row, whatever the filter
        self.filter = ""
        self._shown_keys: list[str] = []
        self._cells: dict[str, tuple[Text, ...]] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def visible_rows(self) -> list[FleetRow]:
        return [r for r in self.rows_known if matches(r, self.filter)]

    def selected_row(self) -> Optional[FleetRow]:
        if not self._shown_keys or not 0 <= self.cursor_row < len(self._shown_keys):
            return None
        key = self._shown_keys[self.cursor_row]
        return next((r for r in self.rows_known if r.key == key), None)

    def show(self, now: float) -> None:
        """Bring the table up to date, in place when the same rows are shown."""
        visible = self.visible_rows
        keys = [r.key for r in visible]
        if keys != self._shown_keys:
            selected = self.selected_row()
            old_index = self.cursor_row
            self.clear()
            self._cells = {}
            for row in visible:
                cells = self._cells[row.key] = render_row(row, now)
                self.add_row(*cells, key=row.key)
            self._shown_keys = keys
            if keys:
                index = (
                    keys.index(selected.key)
                    if selected and selected.key in keys
                    else min(max(old_index, 0), len(keys) - 1)
                )
                self.move_cursor(row=index)
            return
        for row in visible:
            cells = render_row(row, now)
            old = self._cells[row.key]
            for (column, _), new, before in zip(COLUMNS, cells, old, strict=True):
                if not same_cell(new, before):
                    self.update_cell(row.key, column, new, update_width=True)
            self._cells[row.key] = cells

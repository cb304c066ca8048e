"""The process view's table: one row per program per host, updated in place.

It keeps what the operator chose about the rows: the text filter, "not RUNNING only",
grouping by service, and the marked rows (by key, so a mark survives polls and
filters; a row that is no longer there is simply not acted on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from rich.text import Text

from relconsole.status.tracker import FleetRow
from relconsole.ui.measured_table import MeasuredTable
from relconsole.ui.process_rows import columns, matches, not_running, render_row, same_cell


class ProcessTable(MeasuredTable):
    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_known: list[FleetRow] = []  # every row, whatever the filter
        self.filter = ""
        #: Only rows that are not a RUNNING program.
        self.not_running = False
        #: Rows sorted by service, with a Service column.
        self.grouped = False
        #: The service of a row ("" for a host-level row) and the services' order in
        #: the config; the screen sets them.
        self.service_of: Callable[[FleetRow], str] = lambda _row: ""
        self.service_order: list[str] = []
        #: Keys of the marked rows (program rows only).
        self.marked: set[str] = set()
        self._shown_keys: list[str] = []
        self._shown_columns: tuple[tuple[str, str], ...] = ()
        self._cells: dict[str, tuple[Text, ...]] = {}

    @property
    def visible_rows(self) -> list[FleetRow]:
        service = self.service_of
        rows = [
            r
            for r in self.rows_known
            if matches(r, self.filter, service(r)) and (not self.not_running or not_running(r))
        ]
        if self.grouped:  # stable: hosts keep their configured order within a service
            order = {name: i for i, name in enumerate(self.service_order)}
            rows.sort(key=lambda r: order.get(service(r), len(order) + (service(r) == "")))
        return rows

    def selected_row(self) -> Optional[FleetRow]:
        if not self._shown_keys or not 0 <= self.cursor_row < len(self._shown_keys):
            return None
        key = self._shown_keys[self.cursor_row]
        return next((r for r in self.rows_known if r.key == key), None)

    # -- marks ------------------------------------------------------------------
    def marked_rows(self) -> list[FleetRow]:
        """The marked program rows still known, in the table's order."""
        return [r for r in self.rows_known if r.key in self.marked and r.program is not None]

    def toggle_mark(self, row: FleetRow) -> None:
        if row.program is None:
            return
        self.marked ^= {row.key}

    def mark_visible(self) -> None:
        """Mark every visible program row; when all already are, unmark them."""
        keys = {r.key for r in self.visible_rows if r.program is not None}
        if keys <= self.marked:
            self.marked -= keys
        else:
            self.marked |= keys

    # -- drawing ----------------------------------------------------------------
    def _cells_for(self, visible: list[FleetRow], now: float) -> list[tuple[Text, ...]]:
        out = []
        last_service: Optional[str] = None
        for row in visible:
            service = None
            if self.grouped:
                name = self.service_of(row)
                service, last_service = ("" if name == last_service else name), name
            out.append(render_row(row, now, row.key in self.marked, service))
        return out

    def show(self, now: float) -> None:
        """Bring the table up to date, in place when the same rows are shown."""
        visible = self.visible_rows
        keys = [r.key for r in visible]
        wanted = columns(self.grouped)
        cells = self._cells_for(visible, now)
        if keys != self._shown_keys or wanted != self._shown_columns:
            selected = self.selected_row()
            old_index = self.cursor_row
            # Columns too: their widths then fit the rows shown, not every row ever shown.
            self.clear(columns=True)
            for key, label in wanted:
                self.add_column(label, key=key)
            self._shown_columns = wanted
            self._cells = {}
            for row, row_cells in zip(visible, cells, strict=True):
                self._cells[row.key] = row_cells
                self.add_row(*row_cells, key=row.key)
            self._shown_keys = keys
            if keys:
                index = (
                    keys.index(selected.key)
                    if selected and selected.key in keys
                    else min(max(old_index, 0), len(keys) - 1)
                )
                self.move_cursor(row=index)
            return
        for row, new_cells in zip(visible, cells, strict=True):
            old = self._cells[row.key]
            for (column, _), new, before in zip(wanted, new_cells, old, strict=True):
                if not same_cell(new, before):
                    self.update_cell(row.key, column, new, update_width=True)
            self._cells[row.key] = new_cells

"""A ``Static`` whose height always follows its latest text.

Textual (8.2) caches each widget's size under a counter that ``refresh(layout=True)``
bumps only when no layout is pending for the widget yet. When a layout pass measures
the widget between two updates (a resize, a neighbour growing), its size is cached
under that counter; the second update leaves the counter as it was, and the widget
keeps the first text's height (a five-line note cut to one line) until something else
lays it out again. Seen in the console and in about one snapshot run in eight. Each
update here also drops that cache, so the next layout measures the new text.
"""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


class Note(Static):
    """Use it for a ``height: auto`` text that changes while the console runs."""

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        super().update(content, layout=layout)
        # Private to Textual: its size cache (see the module's docstring). Should a
        # Textual release rename it, the console keeps working and tests/test_ui_note.py
        # fails instead.
        cache = getattr(self, "_box_model_cache", None)
        if layout and cache is not None:
            cache.clear()

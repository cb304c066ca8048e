"""An app that shows one widget: for a widget's test without the whole console."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widget import Widget


class OneWidget(App):
    def __init__(self, widget: Widget) -> None:
        super().__init__()
        self.under_test = widget

    def compose(self) -> ComposeResult:
        yield self.under_test

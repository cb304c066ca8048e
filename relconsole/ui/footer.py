"""Textual's Footer, without its leak."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey

#: Terminal widths below which the keys are shown compact (less space between them).
COMPACT_BELOW = 100


class Footer(TextualFooter):
    """Textual's Footer, letting go of the keys each rebuild removes.

    The footer rebuilds its keys (a recompose) on every ``refresh_bindings``, and
    data-binds each new key to its own ``compact``. That binding is kept on the footer
    and pruned only when ``compact`` changes, which it never does here, so every key
    ever made stayed alive with its styles and render caches (Textual issue #6666; the
    process view refreshes its bindings at each poll that moves the cursor row).
    """

    async def recompose(self) -> None:
        await super().recompose()
        # Where Textual keeps watchers: the observed object's "__watchers" attribute.
        watchers = getattr(self, "__watchers", {}).get("compact")
        if watchers:
            watchers[:] = [(node, cb) for node, cb in watchers if node.is_attached]

    def compose(self) -> ComposeResult:
        # A screen with more keys than 80 columns hold names the actions to leave out
        # when compact (``?`` still lists every key), rather than have the last one cut.
        hidden = getattr(self.screen, "COMPACT_FOOTER_HIDES", ()) if self.compact else ()
        for widget in super().compose():
            if not (isinstance(widget, FooterKey) and widget.action in hidden):
                yield widget

    def on_resize(self) -> None:
        # Textual's spacing needs ~85 columns for the main screen's keys: on a narrower
        # terminal the last key ("q Quit") was cut. Compact keys fit it into 80.
        compact = self.size.width < COMPACT_BELOW
        if compact != self.compact:
            self.compact = compact
            # The keys a screen hides when compact. Queued as Textual queues its own
            # recompose on new bindings: two at once would mount every key twice.
            self.call_after_refresh(self.recompose)

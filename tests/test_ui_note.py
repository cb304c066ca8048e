"""A note's height follows its latest text even when a layout pass measured it between
two updates (relconsole/ui/note.py): the glitch that cut the console's "not deployed"
note to one line, and failed about one snapshot run in eight."""

from __future__ import annotations

import pytest
from textual.app import App
from textual.containers import VerticalScroll
from textual.widgets import Static

from relconsole.ui.note import Note

FIVE_LINES = "\n".join(f"line {n}" for n in range(1, 6))


class InScroll(App):
    def __init__(self, kind: type[Static]):
        super().__init__()
        self.kind = kind

    def compose(self):
        with VerticalScroll():
            yield self.kind("first")


async def height_after_a_pass_between_two_updates(kind: type[Static]) -> int:
    app = InScroll(kind)
    async with app.run_test(size=(40, 20)) as pilot:
        await pilot.pause()
        note = app.query_one(kind)
        note.update("one line")
        # What a busy console does now and then: the scroll view is laid out again (it
        # was resized) before the note's own refresh has run. Made deterministic here
        # through Textual's private hooks for it.
        note.parent._clear_arrangement_cache()
        app.screen._refresh_layout()
        note.update(FIVE_LINES)
        await pilot.pause()
        await pilot.pause(0.1)
        return note.size.height


async def test_textuals_static_keeps_the_height_of_the_text_before():
    """The glitch itself, so the next test is known to go through it. Should a Textual
    upgrade fix it, this fails: then Note can go."""
    assert await height_after_a_pass_between_two_updates(Static) == 1


async def test_a_note_takes_the_height_of_its_latest_text():
    assert await height_after_a_pass_between_two_updates(Note) == 5


@pytest.mark.parametrize("text, height", [("a", 1), ("a\nb\nc", 3)])
async def test_a_note_is_a_static_otherwise(text, height):
    app = InScroll(Note)
    async with app.run_test(size=(40, 20)) as pilot:
        note = app.query_one(Note)
        note.update(text)
        await pilot.pause()
        assert (note.content, note.size.height) == (text, height)

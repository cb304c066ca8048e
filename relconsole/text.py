"""Text from elsewhere made safe to show, cut into lines, and plain tables.

Program output, commit subjects, lock holders and host answers come from places
relconsole does not control: before any of it reaches a terminal, its control
sequences are removed (a hostile program could otherwise move the cursor, retitle the
window or write the clipboard). Front ends also never read it as markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# CSI/OSC escape sequences and the other C0 controls (tab is kept).
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?"
    r"|[\x00-\x08\x0b-\x1f\x7f]"
)


def printable(text: str) -> str:
    """``text`` without terminal control sequences."""
    return _CONTROL.sub("", text)


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


#: The longest line kept whole; the rest of a longer one is counted, not kept (a
#: program may print megabytes without a newline; panes and the history must not).
MAX_LINE = 64 * 1024


class LineSplitter:
    """A file-like sink that turns arbitrary chunks into whole lines.

    Invoke and paramiko hand over chunks that are not line-aligned; front ends want
    lines. ``flush_partial`` emits a last line that has no newline. Linear in the
    input however long a line is, and a line is cut at ``max_line`` characters with
    "… [N more characters]".
    """

    def __init__(self, emit: Callable[[str], None], max_line: int = MAX_LINE):
        self._emit = emit
        self._max = max_line
        # The start of a line whose end has not come yet, in pieces: joining only when
        # the newline arrives keeps a long line without one linear, not quadratic.
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0

    def _take(self, piece: str) -> None:
        room = self._max - self._kept
        if len(piece) > room:
            self._dropped += len(piece) - max(room, 0)
            piece = piece[: max(room, 0)]
        if piece:
            self._parts.append(piece)
            self._kept += len(piece)

    def _line_done(self) -> None:
        line = "".join(self._parts).rstrip("\r")
        if self._dropped:
            line += f" … [{self._dropped} more characters]"
        self._parts, self._kept, self._dropped = [], 0, 0
        self._emit(line)

    def write(self, chunk: str) -> int:
        if not chunk:
            return 0
        *whole, rest = chunk.split("\n")
        for piece in whole:
            self._take(piece)
            self._line_done()
        self._take(rest)
        return len(chunk)

    def flush(self) -> None:
        """File-like API: Invoke calls it after each write; lines are only emitted whole."""

    def flush_partial(self) -> None:
        if self._parts or self._dropped:
            self._line_done()
